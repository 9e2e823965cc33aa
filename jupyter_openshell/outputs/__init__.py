"""What a sandboxed kernel shows in the user's browser: the output filter (see `bundle`, `widgets`,
`messages`) and its sanitizers (`sanitize`). Host side only; nothing here may ever pass a kernel's active
content (script, event handler, frame, inline module) to a page on the Jupyter origin.
"""
