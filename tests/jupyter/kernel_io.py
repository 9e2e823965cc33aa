"""Running code in a kernel through jupyter_client for the tests: the reply and every IOPub message, and
the text a user would read from them."""

from __future__ import annotations


async def run(kc, code: str, timeout: float = 120) -> tuple[dict, list[dict]]:
    """Execute `code`; (the execute_reply's content, the IOPub messages of the cell)."""
    msgs: list[dict] = []
    reply = await kc.execute_interactive(code, timeout=timeout, output_hook=msgs.append)
    return reply["content"], msgs


def text(msgs: list[dict]) -> str:
    """What the cell showed: streams, the plain text of rich output, tracebacks."""
    out = []
    for m in msgs:
        c = m["content"]
        if m["msg_type"] == "stream":
            out.append(c["text"])
        elif m["msg_type"] in ("display_data", "execute_result"):
            out.append(c["data"].get("text/plain", ""))
        elif m["msg_type"] == "error":
            out.append("\n".join(c["traceback"]))
    return "".join(out)
