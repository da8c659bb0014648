"""Checkpoint/restore with CRIU: the binary (`criu`), its image files (`criu_images`)
and a live end-to-end check through Podman (`roundtrip`)."""
