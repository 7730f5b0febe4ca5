"""BENCHMARKS.md's sections: each benchmark script rewrites the text between its own markers."""


def write_section(path, name, body):
    """Rewrites the text between <!-- NAME:begin --> and <!-- NAME:end --> (appends it if missing)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else ""
    start, stop = text.find(begin), text.find(end)
    if 0 <= start < stop:
        text = text[:start] + block + text[stop + len(end):]
    else:
        text = f"{text.rstrip()}\n\n{block}\n" if text else f"{block}\n"
    path.write_text(text)
