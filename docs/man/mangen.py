#!/usr/bin/env python3
"""mangen.py: turns one of docs/man/*.md into a man page (roff, the man macros).

The source is plain Markdown of a small, fixed kind, readable as it stands:

    # NAME(SECTION) -- one-line summary
    ## HEADING                      .SH
    ### Subheading                  .SS
    paragraph text                  .PP (blank lines separate paragraphs)
    term                            .TP: a line followed by one starting with ":   "
    :   its description (following lines indented by 4 continue it)
    - bullet                        .IP with a bullet
    ```                             a literal block (.nf), indented
    `code` *emphasis*               bold, italic

Anything else (a table, a link, a heading level 4) is refused with the line and the
reason, so the page never renders wrong silently. Ours rather than pandoc: pandoc
pulls in some 200 MB of Haskell libraries for what is a hundred lines here.

usage: mangen.py SOURCE.md OUTPUT VERSION
"""
import re
import sys


def fail(path, lineno, why):
    sys.exit(f"{path}:{lineno}: {why}")


def escape(text):
    """Roff-escapes plain text (not yet inline markup)."""
    text = text.replace("\\", "\\e")
    # A hyphen in running text may break a line; in options it must stay a minus.
    return text.replace("-", "\\-")


def inline(text, path, lineno):
    out, pos = [], 0
    for m in re.finditer(r"`([^`]+)`|\*([^*\s][^*]*)\*", text):
        out.append(escape(text[pos:m.start()]))
        if m.group(1) is not None:
            out.append("\\fB" + escape(m.group(1)) + "\\fR")
        else:
            out.append("\\fI" + escape(m.group(2)) + "\\fR")
        pos = m.end()
    rest = text[pos:]
    if "`" in rest:
        fail(path, lineno, "an unclosed ` (code)")
    if re.search(r"\[[^\]]*\]\(", rest):
        fail(path, lineno, "links are not supported in man pages: write the address out")
    out.append(escape(rest))
    line = "".join(out)
    # A line starting with . or ' would be a roff request.
    if line.startswith((".", "'")):
        line = "\\&" + line
    return line


def convert(path, version):
    lines = open(path, encoding="utf-8").read().split("\n")
    out = []
    m = re.match(r"# ([a-z0-9_.-]+)\(([1-8])\) -- (.+)$", lines[0])
    if not m:
        fail(path, 1, "the first line must be '# NAME(SECTION) -- summary'")
    name, section, summary = m.groups()
    out.append(f'.TH "{name.upper()}" "{section}" "" "mig {version}" "mig manual"')
    # Names of files and commands must not be hyphenated ("lib-mig.so") or stretched.
    out.append(".nh")
    out.append(".ad l")
    out.append(".SH NAME")
    out.append(f"{escape(name)} \\- {inline(summary, path, 1)}")
    i, n = 1, len(lines)
    paragraph = False  # inside running text of the current paragraph

    def flush_break():
        nonlocal paragraph
        paragraph = False

    while i < n:
        line = lines[i]
        lineno = i + 1
        if line.strip() == "":
            flush_break()
            i += 1
            continue
        if line.startswith("```"):
            out.append(".PP")
            out.append(".RS 4")
            out.append(".nf")
            i += 1
            while i < n and not lines[i].startswith("```"):
                text = escape(lines[i])
                out.append("\\&" + text if text.startswith((".", "'")) or text == "" else text)
                i += 1
            if i == n:
                fail(path, lineno, "a ``` block that never ends")
            out.append(".fi")
            out.append(".RE")
            flush_break()
            i += 1
            continue
        if line.startswith("#### ") or line.startswith("# "):
            fail(path, lineno, "only ## and ### headings after the first line")
        if line.startswith("## "):
            out.append(".SH " + escape(line[3:].strip().upper()))
            flush_break()
            i += 1
            continue
        if line.startswith("### "):
            out.append(".SS " + inline(line[4:].strip(), path, lineno))
            flush_break()
            i += 1
            continue
        if line.startswith("|"):
            fail(path, lineno, "tables are not supported: use a term and ':   description'")
        if line.startswith("- "):
            out.append(".IP \\(bu 2")
            out.append(inline(line[2:].strip(), path, lineno))
            paragraph = True
            i += 1
            while i < n and lines[i].startswith("  ") and lines[i].strip():
                out.append(inline(lines[i].strip(), path, i + 1))
                i += 1
            continue
        if i + 1 < n and lines[i + 1].startswith(":   "):
            out.append(".TP")
            out.append(inline(line.strip(), path, lineno))
            i += 1
            out.append(inline(lines[i][4:].strip(), path, i + 1))
            i += 1
            while i < n and lines[i].startswith("    ") and lines[i].strip():
                out.append(inline(lines[i].strip(), path, i + 1))
                i += 1
            paragraph = True
            continue
        if line.startswith(":   "):
            fail(path, lineno, "a description (':   ') with no term line before it")
        if not paragraph:
            out.append(".PP")
            paragraph = True
        out.append(inline(line.strip(), path, lineno))
        i += 1
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: mangen.py SOURCE.md OUTPUT VERSION")
    src, dst, version = sys.argv[1:]
    text = convert(src, version)
    with open(dst, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
