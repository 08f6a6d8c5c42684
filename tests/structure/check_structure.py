#!/usr/bin/env python3
"""The house rules docs/architecture.md states, checked on the source tree (a ctest, label fast):

1. No function over 120 lines in core/ or app/, parsers excepted (PARSERS below: a format's grammar read in one
   place, and the CLI's option table).
2. No mixer-kind string literal outside the model's registry (core/model/) and the foreign families' own files
   (core/io/families/: each family's names and their mapping onto model_config): interventions, analyses, the session,
   the CLI and the app ask the model (head groups, sites, describe()) instead of naming mixers.

A function is counted from its definition line at column 0 to the closing brace at column 0.
usage: check_structure.py SOURCE_ROOT
"""
import os
import re
import sys

LIMIT = 120
PARSERS = {
    "core/io/foreign.cpp",    # zip, pickle and safetensors readers
    "core/io/import.cpp",     # foreign configs mapped onto model_config
    "core/model/config.cpp",  # model_config's JSON grammar
    "core/cli/main.cpp",      # the command line's option table (CLI11)
}
MIXER_LITERALS = re.compile(r'"(attn|ssm|mamba1|mamba2|Mamba1|Mamba2|parallel)"')
REGISTRY = ("core/model/", "core/io/families/")
DEFINITION = re.compile(r"^[A-Za-z_][^;#]*\)\s*(const\s*)?(override\s*)?(noexcept\s*)?\{\s*$")
SKIP_START = ("namespace", "struct", "class", "enum", "extern", "union", "template", "static_assert", "TEST", "MECHSCOPE_PLUGIN")


def functions(lines):
    """(name line, first line number, length) of each function defined at column 0."""
    i = 0
    while i < len(lines):
        line = lines[i]
        head = line
        # a signature may span lines: join until the opening brace
        j = i
        if line[:1].isalpha() and not line.startswith(SKIP_START) and "(" in line and not line.rstrip().endswith(";"):
            while not head.rstrip().endswith("{") and j + 1 < len(lines) and j - i < 6 and not head.rstrip().endswith(";"):
                j += 1
                head += " " + lines[j].strip()
            if DEFINITION.match(head.replace("\n", " ")):
                k = j + 1
                while k < len(lines) and not lines[k].startswith("}"):
                    k += 1
                yield line.strip(), i + 1, k - i + 1
                i = k + 1
                continue
        i += 1


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    root = sys.argv[1]
    problems = []
    for top in ("core", "app"):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for f in sorted(files):
                if not f.endswith((".cpp", ".h")):
                    continue
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, root)
                with open(path, encoding="utf-8") as fh:
                    lines = fh.read().split("\n")
                if rel not in PARSERS:
                    for name, first, length in functions(lines):
                        if length > LIMIT:
                            problems.append(f"{rel}:{first}: a function of {length} lines (limit {LIMIT}): {name[:90]}")
                if not rel.startswith(REGISTRY):
                    for n, line in enumerate(lines, 1):
                        code = line.split("//")[0]
                        m = MIXER_LITERALS.search(code)
                        if m:
                            problems.append(f"{rel}:{n}: mixer-kind literal {m.group(0)} outside core/model/")
    for p in problems:
        print(p)
    print(f"check_structure: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
