"""`p4cf images build|list`: the kit's container images (offline, rebuilt only on change)."""

from __future__ import annotations

import argparse

from p4cf_kit.podman import images


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _build(args: argparse.Namespace) -> int:
    for outcome in images.build_all(force=args.force, base=args.base):
        what = f"built in {outcome.seconds:.1f} s" if outcome.built else "up to date"
        print(f"{outcome.ref:40} {what:18} {_mb(outcome.size_bytes)}")
    return 0


def _list(_args: argparse.Namespace) -> int:
    rows = images.list_images()
    if not rows:
        print("no kit images; run `p4cf images build`")
        return 0
    print(f"{'IMAGE':40} {'ID':12}  {'SIZE':>9}  {'INPUTS':12}  CREATED")
    for row in rows:
        print(f"{row.ref:40} {row.image_id:12}  {_mb(row.size_bytes):>9}  {row.inputs:12}  {row.created}")
    return 0


def _push(args: argparse.Namespace) -> int:
    from p4cf_kit.config import load_config
    from p4cf_kit.machines.images import PUSHED_BY_DEFAULT, push_images
    from p4cf_kit.machines.registry import named_machine
    machine, _ = named_machine(args.machine, load_config(args.config) if args.config else None)
    for o in push_images(machine, args.image or PUSHED_BY_DEFAULT):
        what = (f"copied {_mb(o.bytes)} in {o.seconds:.1f} s" if o.copied
                else "already there (same image id)")
        print(f"{o.ref:40} {o.image_id}  {machine.name}: {what}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("images", help="build or list the kit's container images")

    def show_help(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=show_help)
    actions = parser.add_subparsers(dest="images_action", metavar="ACTION")
    build = actions.add_parser(
        "build", help="build localhost/p4cf-base, -tcp-server and -tcp-client offline (skips unchanged ones)")
    build.add_argument("--force", action="store_true", help="rebuild even when the inputs did not change")
    build.add_argument("--base", metavar="IMAGE",
                       help="build the workload images on IMAGE (present locally, e.g. pulled "
                            "docker.io/library/python:3.11-slim) instead of the kit's own base")
    build.set_defaults(func=_build)
    push = actions.add_parser(
        "push", help="copy the kit's images to another machine of a lab (podman save | load over "
                     "its Podman connection; skipped when the same image id is there)")
    push.add_argument("machine", help="machine name: a [machines.NAME] of the config, or an emulated machine")
    push.add_argument("-c", "--config", help="lab config that defines the machine")
    push.add_argument("--image", action="append", metavar="REF",
                      help="push only this image (repeatable; default: the server and client images)")
    push.set_defaults(func=_push)
    lst = actions.add_parser("list", help="kit images (label p4cf=1) with size and input hash")
    lst.set_defaults(func=_list)
