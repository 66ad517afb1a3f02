#!/usr/bin/env python3
"""file_circles.py DIR...: fails when the .c files of a folder call each
other in a circle (a.c uses a function defined in b.c, and b.c, directly or
through others, one defined in a.c). Function pointers count as uses; a
callback registered at start breaks a circle only when the lower file does
not name the function."""
import os
import re
import sys

DEF = re.compile(r'^(?!static\b)(?:[A-Za-z_][\w \t\*]*?[\s\*])(\w+)\s*\([^;{]*\)\s*\{', re.M)
# Comments and literals in one pass, so "http://" is not a comment.
NOISE = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)


def strip(src):
    return NOISE.sub(lambda m: ' ' if m.group(0)[0] == '/' else '""', src)


def graph(folder):
    files = sorted(f for f in os.listdir(folder) if f.endswith('.c'))
    text = {f: strip(open(os.path.join(folder, f), encoding='utf-8').read()) for f in files}
    owner = {}
    for f in files:
        for m in DEF.finditer(text[f]):
            owner.setdefault(m.group(1), f)
    edges = {f: set() for f in files}
    for f in files:
        for word in set(re.findall(r'\b\w+\b', text[f])):
            g = owner.get(word)
            if g and g != f:
                edges[f].add(g)
    return edges


def circles(edges):
    """Strongly connected groups of more than one file (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main(folders):
    bad = 0
    for folder in folders:
        edges = graph(folder)
        for group in circles(edges):
            bad += 1
            uses = '; '.join(f'{a} -> {b}' for a in group for b in sorted(edges[a]) if b in group)
            print(f'{folder}: circle among {", ".join(group)} ({uses})')
    if not bad:
        print('no circles in', ', '.join(folders))
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
