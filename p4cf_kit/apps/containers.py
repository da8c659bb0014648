"""Which image and command a workload's server and client run, as Podman arguments.

Why in one place: bring-up, the migration's landing container and the traffic client must
agree on them, and only the workload config decides. The echo, http and request/response
clients all live in the kit's client image (`p4cf_kit/workload/`); redis runs in its own image
(podman/redis_image.py); a custom workload brings its image and, optionally, its client.
"""

from __future__ import annotations

from p4cf_kit.apps.settings import WorkloadConfig
from p4cf_kit.podman.redis_image import REDIS_REF
from p4cf_kit.workload import WORKLOAD_IMAGE_DIR

#: Inside the client container: where the log folder is mounted, and the custom client's CSV.
CLIENT_LOG_DIR = "/data"
CUSTOM_CSV = "custom.csv"


def server_image(wl: WorkloadConfig, default: str) -> str:
    """The backends' image: the workload's own, else `default` (the lab's images.server)."""
    if wl.image:
        return wl.image
    return REDIS_REF if wl.kind == "redis" else default


def server_command(wl: WorkloadConfig) -> list[str]:
    """The backends' command, or [] for the image's own."""
    if wl.command:
        return list(wl.command)
    if wl.kind == "http":
        return ["python3", f"{WORKLOAD_IMAGE_DIR}/http_server.py"]
    return []


def client_mode(wl: WorkloadConfig) -> str:
    """How the traffic is made: "echo" (tcp_client), "command" (the user's client), or an rr_client mode."""
    if wl.kind == "echo":
        return "echo"
    if wl.kind == "custom":
        return wl.protocol
    return wl.kind


def client_image(wl: WorkloadConfig, default: str) -> str:
    return wl.client_image if wl.kind == "custom" and wl.protocol == "command" and wl.client_image else default


def client_args(wl: WorkloadConfig, vip: str, port: int, connections: int, rate: float, duration: float,
                image: str, extra: list[str]) -> list[str]:
    """`podman run` arguments from the image on: entrypoint, image, the client's own arguments."""
    csv = f"{CLIENT_LOG_DIR}/client.csv"
    common = ["--vip", vip, "--port", str(port), "--connections", str(connections), "--rate", str(rate),
              "--duration", str(duration), "--csv", csv]
    mode = client_mode(wl)
    if mode == "echo":
        return [image, *common, *extra]
    if mode == "command":
        command = wl.client_command.format(vip=vip, port=port, connections=connections, rate=rate,
                                           duration=duration, csv=f"{CLIENT_LOG_DIR}/{CUSTOM_CSV}")
        return ["--entrypoint", "sh", image, "-c", command]
    own = ["--value-bytes", str(wl.value_bytes)] if mode == "redis" else \
        ["--request", wl.request] if mode in ("lines", "length") else []
    return ["--entrypoint", "python3", image, f"{WORKLOAD_IMAGE_DIR}/rr_client.py", "--mode", mode,
            *common, *own, *extra]
