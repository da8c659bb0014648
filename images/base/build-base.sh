#!/usr/bin/env bash
# Assemble the root filesystem of the kit's base image offline: busybox-static for a shell
# and tools, plus this host's Python 3 (interpreter, stdlib, and the shared libraries it
# loads, found with ldd). No registry is needed; `p4cf images build` turns the result into
# localhost/p4cf-base:latest (FROM scratch + ADD rootfs.tar).
#
# Usage: build-base.sh OUTDIR      writes OUTDIR/rootfs.tar
# Env:   P4CF_BASE_PYTHON          interpreter to copy (default: python3 on PATH)
#        P4CF_BUSYBOX              busybox binary (default: /bin/busybox; must be static)
#
# Python goes to /usr/local/bin/python3.X with its stdlib in /usr/local/lib/python3.X, so it
# finds its prefix from its own location whatever the host layout was (pyenv, Debian, ...).
set -euo pipefail

die() { printf 'build-base: error: %s\n' "$*" >&2; exit 1; }

out=${1:-}
[ -n "$out" ] || die "usage: $0 OUTDIR (the directory that receives rootfs.tar)"
python=${P4CF_BASE_PYTHON:-$(command -v python3 || true)}
busybox=${P4CF_BUSYBOX:-/bin/busybox}
[ -n "$python" ] && [ -x "$python" ] || die "no python3 found; install python3 or set P4CF_BASE_PYTHON=/path/to/python3"
[ -x "$busybox" ] || die "no $busybox; install busybox-static (apt-get install busybox-static) or set P4CF_BUSYBOX"
file_out=$(LC_ALL=C ldd "$busybox" 2>&1 || true)
case $file_out in *"not a dynamic executable"*|*"statically linked"*) ;;
    *) die "$busybox is dynamically linked; install busybox-static (apt-get install busybox-static)";; esac

# Ask the interpreter itself where its pieces are (pyenv shims resolve to the real binary here).
read -r exe ver stdlib dynload < <("$python" -c '
import sys, sysconfig, os
print(os.path.realpath(sys.executable), "%d.%d" % sys.version_info[:2],
      sysconfig.get_paths()["stdlib"], os.path.join(sysconfig.get_paths()["platstdlib"], "lib-dynload"))') \
    || die "$python does not run"
[ -f "$stdlib/os.py" ] || die "stdlib of $python not found at $stdlib"

root="$out/rootfs"
rm -rf "$root" && mkdir -p "$root"/{bin,sbin,etc,tmp,root,proc,sys,dev,run,var/tmp,usr/local/bin,usr/local/lib}
chmod 1777 "$root/tmp" "$root/var/tmp"

# busybox and its applets (/bin/sh among them).
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done

# The interpreter and its stdlib, without tests, GUI, bundled pip wheels, caches, installed
# packages and the static libpython (config-*), which would make the image ten times larger.
cp "$exe" "$root/usr/local/bin/python$ver"
ln -s "python$ver" "$root/usr/local/bin/python3"
ln -s "python$ver" "$root/usr/local/bin/python"
ln -s /usr/local/bin/python3 "$root/bin/python3"
dest="$root/usr/local/lib/python$ver"
tar -C "$stdlib" -cf - \
    --exclude='./site-packages' --exclude='./dist-packages' --exclude='./test' --exclude='./*/test' \
    --exclude='./*/tests' --exclude='./idlelib' --exclude='./tkinter' --exclude='./turtledemo' \
    --exclude='./ensurepip' --exclude='./config-*' --exclude='__pycache__' --exclude='*.pyc' --exclude='*.a' \
    . | { mkdir -p "$dest" && tar -C "$dest" -xf -; }
mkdir -p "$dest/site-packages"
if [ "$dynload" != "$stdlib/lib-dynload" ] && [ -d "$dynload" ]; then
    mkdir -p "$dest/lib-dynload" && cp -r "$dynload"/. "$dest/lib-dynload/"
fi
[ -d "$dest/lib-dynload" ] || die "no lib-dynload next to $stdlib (extension modules of $python)"
rm -f "$dest"/lib-dynload/_tkinter*  # Tk would pull in X11 libraries

# Shared libraries: everything ldd reports for the interpreter and its extension modules,
# kept at the path the host resolved (libpython of a pyenv build keeps its absolute RPATH).
copy_libs() {
    LC_ALL=C ldd "$@" 2>/dev/null | awk '/=> \// {print $3} /^\t\/[^ ]+ \(/ {print $1}' | sort -u |
    while read -r lib; do
        [ -e "$root$lib" ] && continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}
copy_libs "$exe"
mapfile -d '' mods < <(find "$dest/lib-dynload" -name '*.so' -print0)
[ "${#mods[@]}" -gt 0 ] && copy_libs "${mods[@]}"
# glibc loads libgcc_s at run time (thread cancellation), ldd does not show it.
for extra in /lib/x86_64-linux-gnu/libgcc_s.so.1 /usr/lib/x86_64-linux-gnu/libgcc_s.so.1 /lib64/libgcc_s.so.1; do
    [ -e "$extra" ] && { mkdir -p "$root$(dirname "$extra")"; cp -L "$extra" "$root$extra"; break; }
done
# The multiarch loader path on merged-/usr hosts is /lib64 -> usr/lib64 etc.; keep both views.
[ -e /lib64/ld-linux-x86-64.so.2 ] && [ ! -e "$root/lib64/ld-linux-x86-64.so.2" ] && {
    mkdir -p "$root/lib64"; cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"; }

# Debug symbols are most of a self-built libpython (pyenv: 23 MB of 25); drop them when we can.
if command -v strip >/dev/null; then
    find "$root/usr/local" "$root/root" -type f \( -name '*.so' -o -name '*.so.*' -o -name "python$ver" \) \
        -exec strip --strip-debug {} + 2>/dev/null || true
    find "$root" -path "$root/usr/local" -prune -o -path "$root/root" -prune -o -name 'libpython*' -type f \
        -exec strip --strip-debug {} + 2>/dev/null || true
fi

cat > "$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat > "$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
printf 'p4cf-base: busybox %s, python %s from %s\n' \
    "$("$busybox" 2>&1 | head -n1 | awk '{print $2}')" "$ver" "$exe" > "$root/etc/p4cf-base-release"

# A smoke test inside the tree (chroot), so a broken copy fails here and not in a container.
if [ "$(id -u)" = 0 ]; then
    chroot "$root" /usr/local/bin/python3 -c 'import socket, selectors, json, ssl, hashlib' \
        || die "python3 in the assembled tree does not start (chroot test); see the error above"
fi

tar -C "$root" --numeric-owner -cf "$out/rootfs.tar" .
rm -rf "$root"
printf '%s\n' "$out/rootfs.tar"
