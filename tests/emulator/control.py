"""``/_emu/...``: the emulator's own endpoints, on any host (through the proxy
as ``http://emulator.invalid/_emu/...`` or directly at
``http://127.0.0.1:PORT/_emu/...``).

=========================  ================================================
``GET /_emu/stats``        ``Emulator.stats()``; ``?log=0`` leaves out the
                           request log
``POST /_emu/reset``       ``Emulator.reset_stats()``
``GET /_emu/config``       the current settings
``POST /_emu/config``      JSON object of settings to change; answers with
                           all settings (400 and ``{"error"}`` if bad)
``POST /_emu/inject``      ``{"pattern": "...", "faults": ["503:2", ...]}``
``DELETE /_emu/inject``    forget all scripted faults not yet used
``POST /_emu/burst``       ``{"host": "...", "seconds": S, "retry_after": R}``:
                           the host refuses everything for S seconds
``POST /_emu/change``      change the catalog (``changes.apply``)
=========================  ================================================
"""

import json
import urllib.parse

from tests.emulator import changes
from tests.emulator.routes import json_reply


def control_reply(emu, request):
    action = (request.method, request.path)
    try:
        if action == ("GET", "/_emu/stats"):
            query = urllib.parse.parse_qs(request.query)
            return json_reply(emu.stats(with_log=query.get("log") != ["0"]))
        if action == ("POST", "/_emu/reset"):
            emu.reset_stats()
            return json_reply({"ok": True})
        if action == ("GET", "/_emu/config"):
            return json_reply(emu.settings.as_dict())
        if action == ("POST", "/_emu/config"):
            return json_reply(emu.configure(**_json_body(request)))
        if action == ("POST", "/_emu/inject"):
            document = _json_body(request)
            emu.inject(document["pattern"], document["faults"])
            return json_reply({"ok": True})
        if action == ("POST", "/_emu/burst"):
            document = _json_body(request)
            emu.faults.bursts.start(document["host"], float(document["seconds"]),
                                    document.get("retry_after"))
            return json_reply({"ok": True})
        if action == ("POST", "/_emu/change"):
            changes.apply(emu.catalog, _json_body(request))
            return json_reply({"ok": True})
        if action == ("DELETE", "/_emu/inject"):
            emu.clear_injections()
            return json_reply({"ok": True})
    except (ValueError, KeyError, TypeError) as exc:
        return json_reply({"error": f"{type(exc).__name__}: {exc}"}, status=400)
    return json_reply({"error": f"no control endpoint {request.method} {request.path}"}, 404)


def _json_body(request):
    document = json.loads(request.body or b"{}")
    if not isinstance(document, dict):
        raise ValueError("the body must be a JSON object")
    return document
