"""Is the keeper up? One ``GET /status`` on its loopback status API.

``http.client`` straight to the address, not ``urllib``: urllib would route through an
``http_proxy`` from the environment, and a proxy cannot reach our loopback.
"""

from __future__ import annotations

import http.client
import json


def status_answers(host: str, port: int, timeout: float) -> bool:
    """True when the keeper's status API answers 200 with a JSON object in ``timeout``."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/status", headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read(4 * 1024 * 1024)
        return response.status == 200 and isinstance(json.loads(body), dict)
    except (OSError, http.client.HTTPException, ValueError):
        return False
    finally:
        conn.close()
