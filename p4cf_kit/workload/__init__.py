"""The workload programs that run inside the lab's containers (stdlib-only scripts).

`tcp_server.py` runs in each backend, `tcp_client.py` in the client host; both
import their sibling `protocol.py` by path, never `p4cf_kit`, so the image build
copies this whole folder to `WORKLOAD_IMAGE_DIR` and runs the scripts with the
image's python3. This package only tells the rest of the kit where they are.
"""

from __future__ import annotations

from pathlib import Path

WORKLOAD_DIR = Path(__file__).resolve().parent
SERVER_SCRIPT = WORKLOAD_DIR / "tcp_server.py"
CLIENT_SCRIPT = WORKLOAD_DIR / "tcp_client.py"
PROTOCOL_MODULE = WORKLOAD_DIR / "protocol.py"
RR_CLIENT_SCRIPT = WORKLOAD_DIR / "rr_client.py"
HTTP_SERVER_SCRIPT = WORKLOAD_DIR / "http_server.py"
SCRIPTS = (SERVER_SCRIPT, CLIENT_SCRIPT, PROTOCOL_MODULE, RR_CLIENT_SCRIPT, HTTP_SERVER_SCRIPT)
WORKLOAD_IMAGE_DIR = "/opt/p4cf/workload"  # where images put SCRIPTS

#: Header of the client's CSV log, in order (kept equal to tcp_client.COLUMNS by a test).
CLIENT_LOG_COLUMNS = ("conn_id", "src_ip", "src_port", "dst_ip", "dst_port", "seq", "send_ns",
                      "recv_ns", "rtt_ms", "host", "server_count", "event", "t_ns", "server_ip", "detail", "op")
