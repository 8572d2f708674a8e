#!/usr/bin/env python3
"""Write a random taskgraph repository for differential tests of kiln against taskgraph.

Usage: python3 random_tree.py SEED DEST [--max-mb N]

The same SEED always gives the same tree (names, contents, modes, symlinks),
independently of the umask: every mode is set with chmod. DEST is replaced.

The tree has the taskgraph layout (`.taskcluster.yml`, `taskcluster/config.yml`,
`taskcluster/kinds/docker-image/kind.yml`, `taskcluster/docker/<definition>/`)
and exercises what `docs/taskgraph-compat.md` §1 describes:

* images with parents (chains and siblings), `definition` reuse with different args;
* `# %ARG` (names that prefix each other, chained substitutions, `$ARG` used in
  `# %include` lines, `${ARG}` and `$ARGX` left alone, uses before the `%ARG` line);
* `# %include` of files and folders, with verbatim path spellings (`./x`, `a/../b`,
  trailing `/`, a tab as 11th character, extra blanks), decoy comments
  (`#  %include`, ` # %include`), overlapping includes, an include of a symlink
  to a file and of a symlink to a folder;
* names: nested, long (> 100 bytes, GNU long names), unicode with a multi-byte
  character cut at byte 100 of the archive name, archive names of exactly 99/100/101
  bytes, names that sort trickily (`a-b`, `a.b`, `a/`, `a0`, `A`, dotfiles, spaces),
  a *file* named `__pycache__`, `__pycache__` folders (pruned), `.git` folders;
* symlinks to files inside the repository (also chains), symlinked folders (taskgraph
  drops them), empty folders, empty files;
* CRLF, mixed and lone-CR Dockerfiles, Dockerfiles without a final newline;
* modes 0644, 0755, 0600, 0664, 01644 (sticky), sizes from 0 bytes to a few MB,
  around the 512 and 10240 byte boundaries;
* a context file shadowed by an include with the same archive name;
* with or without `cached-task-prefix`, sometimes `cache-pull-requests: false`.

Only inputs that both tools must accept are generated: no setuid/setgid, no fifos,
no broken symlinks, no include or symlink leaving the repository, only UTF-8 names,
printable ASCII arg values without backslashes, no `# %include-run-task`.
"""

import argparse
import json
import os
import random
import shutil
import sys

MODES = [0o644] * 8 + [0o755] * 3 + [0o600, 0o664, 0o1644]

ASCII_NAMES = [
    "alpha", "Beta", "GAMMA", "a", "A", "a-b", "a.b", "a_b", "a0", "a b", "a~",
    ".hidden", ".a", ".gitignore", "-dash", "~tilde", "z", "Zed", "_under",
    "__init__.py", "mod.py", "x.pyc", "#hash", "semi;colon", "comma,", "paren(1)",
    "plus+", "eq=", "@at", "percent%", "quote'", "dollar$sign", "back\\slash",
    "README", "readme.md", "data.json", "setup.sh", "Makefile", "1", "10", "9",
]
UNICODE_NAMES = [
    "ünïcødé", "名前", "😀emoji", "é-composed", "e\u0301-decomposed", "Ωmega",
    "straße", "日本語のファイル", "ñ", "Ä", "ä", "\u00a0nbsp",
]
ARCH_VALUES = ["amd64", "arm64", "x86_64", "riscv64", "s390x"]
FLAVOR_VALUES = ["slim", "full", "debug-build"]
# Names that prefix each other: `\$V\b` must not touch `$VERSION` or `$V_X`.
FREE_ARG_NAMES = ["V", "VERSION", "DIST", "X1", "LONG_NAME", "V_X"]
PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "\\")


class Tree:
    def __init__(self, rng, dest, max_bytes):
        self.rng = rng
        self.dest = dest
        self.budget = max_bytes
        self.files = []  # repo-relative paths of regular files
        self.dirs = []  # repo-relative paths of real (non-symlink) folders with content

    # ------------------------------------------------------------ primitives
    def path(self, rel):
        return os.path.join(self.dest, rel)

    def size(self):
        r = self.rng.random()
        if r < 0.08:
            return 0
        if r < 0.25:
            return self.rng.choice([1, 511, 512, 513, 1023, 1024, 10239, 10240, 10241, 65536])
        if r < 0.97 or self.budget < 4 << 20:
            return self.rng.randint(1, 6000)
        return self.rng.randint(100_000, 3_500_000)

    def write(self, rel, data=None, mode=None):
        if data is None:
            n = min(self.size(), max(self.budget, 0))
            data = self.rng.randbytes(n) if self.rng.random() < 0.5 else self.text(n)
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.budget -= len(data)
        p = self.path(rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, self.rng.choice(MODES) if mode is None else mode)
        self.files.append(rel)
        return rel

    def text(self, n):
        words = ["lorem", "ipsum", "dolor", "sit", "amet", "ünï", "名前", "\n", "\t", "\r\n"]
        out = []
        total = 0
        while total < n:
            w = self.rng.choice(words)
            out.append(w)
            total += len(w.encode()) + 1
        return " ".join(out).encode("utf-8")[:n]

    def symlink(self, rel, target_rel):
        """A relative symlink at `rel` pointing at repo-relative `target_rel`."""
        p = self.path(rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        target = os.path.relpath(self.path(target_rel), os.path.dirname(p))
        os.symlink(target, p)

    def name(self):
        r = self.rng.random()
        if r < 0.55:
            return self.rng.choice(ASCII_NAMES)
        if r < 0.75:
            return self.rng.choice(UNICODE_NAMES)
        if r < 0.9:
            return "f%d.%s" % (self.rng.randint(0, 999), self.rng.choice(["txt", "bin", "sh", "py"]))
        # long component (a single component must stay < 256 bytes)
        base = self.rng.choice(["long-component-name-", "名前-long-", "x"])
        reps = self.rng.randint(3, max(3, 120 // len(base.encode())))
        return (base * reps)[:80]

    # ------------------------------------------------------------ folders
    def folder(self, rel, depth, nfiles):
        """A random folder tree under repo-relative `rel`."""
        self.dirs.append(rel)
        used = set()
        for _ in range(nfiles):
            n = self.name()
            if n in used:
                continue
            used.add(n)
            if depth > 0 and self.rng.random() < 0.2:
                sub = os.path.join(rel, n)
                if os.path.exists(self.path(sub)):
                    continue
                self.folder(sub, depth - 1, self.rng.randint(1, max(1, nfiles // 2)))
            elif not os.path.exists(self.path(os.path.join(rel, n))):
                self.write(os.path.join(rel, n))
        # siblings whose order differs between per-component and full-string sort
        if self.rng.random() < 0.5:
            for n in ["s-b", "s.b", "s0", "S"]:
                self.write(os.path.join(rel, n))
            self.write(os.path.join(rel, "s", "inner"))
        if self.rng.random() < 0.4:
            self.write(os.path.join(rel, "__pycache__", "m.cpython-311.pyc"))
            if depth > 0:
                self.write(os.path.join(rel, "deeper", "__pycache__", "n.pyc"))
                self.write(os.path.join(rel, "deeper", "kept.txt"))
        if self.rng.random() < 0.15:
            self.write(os.path.join(rel, "__pycache__x", "not-pruned.pyc"))
        if self.rng.random() < 0.15:
            self.write(os.path.join(rel, ".git", "HEAD"), "ref: refs/heads/main\n")
        if self.rng.random() < 0.2:
            os.makedirs(self.path(os.path.join(rel, "empty-dir", "nested-empty")), exist_ok=True)

    def links(self, rel_dir, nlinks):
        """Symlinks to files anywhere in the repository, placed in `rel_dir`."""
        for i in range(nlinks):
            if not self.files:
                return
            target = self.rng.choice(self.files)
            link = os.path.join(rel_dir, "link-%d-%s" % (i, os.path.basename(target)))
            if os.path.lexists(self.path(link)):
                continue
            self.symlink(link, target)
            if self.rng.random() < 0.3:  # a chain: link -> link -> file
                link2 = link + ".chain"
                if not os.path.lexists(self.path(link2)):
                    self.symlink(link2, link)

    def dir_link(self, rel_dir):
        """A symlinked folder: taskgraph's os.walk lists it but does not descend (dropped)."""
        if not self.dirs:
            return
        target = self.rng.choice(self.dirs)
        link = os.path.join(rel_dir, "linkdir-%d" % self.rng.randint(0, 99))
        if not os.path.lexists(self.path(link)) and not target.startswith(rel_dir):
            self.symlink(link, target)

    def boundary_names(self, rel_dir, archive_prefix):
        """Files whose archive name (`archive_prefix` + name) is exactly 99, 100 or 101 bytes,
        or cuts a 2-, 3- or 4-byte character at byte 100."""
        plen = len(archive_prefix.encode("utf-8"))
        room = 100 - plen
        if room < 10:
            return
        picks = self.rng.sample(range(6), self.rng.randint(2, 6))
        for k in picks:
            if k == 0:
                n = "n" * (room - 1)  # 99 bytes
            elif k == 1:
                n = "n" * room  # exactly 100: no NUL, no long name
            elif k == 2:
                n = "n" * (room + 1)  # 101: GNU long name
            elif k == 3:
                n = "u" * (room - 1) + "é" + "-2byte.txt"  # é = bytes 99..100
            elif k == 4:
                n = "u" * (room - self.rng.choice([1, 2])) + "名" + "-3byte.txt"
            else:
                n = "u" * (room - self.rng.choice([1, 2, 3])) + "😀" + "-4byte.txt"
            self.write(os.path.join(rel_dir, n))


def yaml_str(s):
    # JSON strings are valid YAML double-quoted scalars for printable ASCII plus \t.
    return json.dumps(s)


def random_value(rng):
    r = rng.random()
    if r < 0.1:
        return ""
    if r < 0.2:
        return rng.choice(["yes", "no", "1.0", "null", "~", "true", "0x10", "007"])
    n = rng.randint(1, 24)
    s = "".join(rng.choice(PRINTABLE) for _ in range(n))
    if rng.random() < 0.1:
        s += "\t"
    if rng.random() < 0.15:
        s += "$V"  # a later substitution may rewrite it
    return s


def include_spelling(rng, p, is_dir):
    """Spell include path `p` in one of the ways taskgraph keeps verbatim."""
    r = rng.random()
    if r < 0.6:
        return p
    if r < 0.7 and is_dir:
        return p + "/"
    if r < 0.8:
        return "./" + p
    parts = p.split("/")
    if len(parts) >= 2 and r < 0.88:
        # a/../a/b: stays inside the repository, kept verbatim in the archive name
        return parts[0] + "/../" + p
    if len(parts) >= 2 and r < 0.94:
        return parts[0] + "//" + "/".join(parts[1:])  # an inner double slash, kept verbatim
    if r < 0.97:
        return p + "//" if is_dir else p
    return p + "/" if not is_dir else p  # a file spelled with a trailing slash: normpath drops it


def include_line(rng, spelled):
    r = rng.random()
    if r < 0.8:
        return "# %include " + spelled
    if r < 0.9:
        return "# %include\t" + spelled  # the 11th character is skipped whatever it is
    return "# %include   " + spelled + "  "


def generate(seed, dest, max_mb):
    rng = random.Random(seed)
    if os.path.lexists(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    t = Tree(rng, dest, max_mb << 20)

    # ------------------------------------------------------------ config
    t.write(".taskcluster.yml", "version: 1\nreporting: checks-v1\npolicy:\n  pullRequests: public\ntasks: []\n", 0o644)
    prefix_line = ""
    if rng.random() < 0.6:
        prefix_line = "  cached-task-prefix: diff.v2.seed%d\n" % seed
    if rng.random() < 0.2:  # pull requests then write no route and look up no cache.pr
        prefix_line += "  cache-pull-requests: false\n"
    t.write("taskcluster/config.yml", """\
trust-domain: diff%d
task-priority: low
treeherder:
  group-names:
    I: Docker images
taskgraph:
%s  repositories:
    diff:
      name: diff
workers:
  aliases:
    images:
      provisioner: diff-provisioner
      implementation: docker-worker
      os: linux
      worker-type: images
""" % (seed, prefix_line), 0o644)
    t.files.clear()  # never include the config files themselves

    # ------------------------------------------------------------ shared sources
    tops = []
    for i in range(rng.randint(2, 4)):
        top = "src/%s%d" % (rng.choice(["lib", "tools", "pkg", "Common", "ünï"]), i)
        t.folder(top, depth=rng.randint(1, 4), nfiles=rng.randint(4, 14))
        tops.append(top)
    # a deep folder with long and unicode names (archive names > 100 bytes, cut characters)
    long_dir = "src/" + ("a-very-long-directory-name-" * 2) + "x/" + "名前" * 5
    t.folder(long_dir, depth=1, nfiles=4)
    tops.append(long_dir)
    # archive names of exactly 99/100/101 bytes and characters cut at byte 100
    t.boundary_names("src/bnd", "topsrcdir/src/bnd/")
    tops.insert(0, "src/bnd")
    for arch in ARCH_VALUES:
        t.write("src/arch/%s.txt" % arch, arch + "\n")
    for fl in FLAVOR_VALUES:
        t.folder("src/flavors/" + fl, depth=1, nfiles=3)
    # symlinks to files, and symlinked folders, inside included folders
    for top in tops[:2]:
        t.links(top, rng.randint(1, 4))
        if rng.random() < 0.5:
            t.dir_link(top)
    # a top-level symlink to a file and to a folder, both usable as include targets
    link_file = link_dir = None
    if t.files and rng.random() < 0.6:
        link_file = "src/link-to-file"
        t.symlink(link_file, rng.choice([f for f in t.files if f.startswith("src/")]))
    if rng.random() < 0.4:
        link_dir = "src/link-to-dir"
        t.symlink(link_dir, rng.choice(tops[:-1]))

    shared_files = [f for f in t.files if f.startswith("src/")]

    # ------------------------------------------------------------ image definitions
    ndefs = rng.randint(3, 6)
    defs = []
    for i in range(ndefs):
        d = rng.choice(["base", "build", "lint", "py", "node", "rust", "deb"]) + str(i)
        defs.append(d)
    # which %ARG names each definition declares
    def_args = {}
    for d in defs:
        names = []
        if rng.random() < 0.5:
            names.append("ARCH")
        if rng.random() < 0.3:
            names.append("FLAVOR")
        names += rng.sample(FREE_ARG_NAMES, rng.randint(0, 3))
        def_args[d] = names

    # images: each definition once, plus some reusing a definition with other args
    images = []  # dicts: name, definition, parent, args
    for d in defs:
        images.append({"name": d, "definition": d})
    for i in range(rng.randint(1, 3)):
        d = rng.choice(defs)
        images.append({"name": "%s-v%d" % (d, i), "definition": d})
    rng.shuffle(images)
    for i, img in enumerate(images):
        # parents come from earlier images only: chains and siblings, never cycles
        if i > 0 and rng.random() < 0.6:
            img["parent"] = images[rng.randrange(i)]["name"]
        args = {}
        for a in def_args[img["definition"]]:
            if a == "ARCH":
                args[a] = rng.choice(ARCH_VALUES)
            elif a == "FLAVOR":
                args[a] = rng.choice(FLAVOR_VALUES)
            else:
                args[a] = random_value(rng)
        if rng.random() < 0.2:  # an arg that no %ARG line declares: only in the digest
            args["UNUSED_%d" % i] = random_value(rng)
        if args or rng.random() < 0.3:
            img["args"] = args

    # ------------------------------------------------------------ Dockerfiles and contexts
    D = "taskcluster/docker/"
    done_defs = []
    for d in defs:
        ctx = D + d
        lines = []
        has_parent = any(i.get("parent") for i in images if i["definition"] == d)
        lines.append("FROM $DOCKER_IMAGE_PARENT" if has_parent else "FROM debian:bookworm-slim")
        if "ARCH" in def_args[d] and rng.random() < 0.5:
            lines.append("RUN echo $ARCH before its %ARG line stays")
        declared = []
        for a in def_args[d]:
            lines.append(rng.choice(["# %ARG ", "# %ARG  "]) + a + rng.choice(["", " "]))
            declared.append(a)
            if a == "ARCH":
                lines.append(include_line(rng, "src/arch/$ARCH.txt"))
                lines.append("COPY topsrcdir/src/arch/$ARCH.txt /etc/arch")
                lines.append("RUN echo $ARCH ${ARCH} $ARCHITECTURE $ARCH-suffix $ARCH_X")
                if rng.random() < 0.5:  # \b is Unicode-aware: é and 名 are word characters, 😀 is not
                    lines.append("RUN echo $ARCHé $ARCH名 $ARCH😀 $ARCH1 $ARCH.")
                if rng.random() < 0.3:  # braces are not substituted: a folder literally named ${ARCH}
                    lit = "src/literal/${ARCH}"
                    if not os.path.exists(t.path(lit)):
                        t.write(lit + "/file.txt", "literal\n")
                    lines.append(include_line(rng, lit))
            elif a == "FLAVOR":
                lines.append(include_line(rng, rng.choice(["src/flavors/$FLAVOR", "src/flavors/$FLAVOR/"])))
            else:
                lines.append("ENV %s_VALUE=$%s" % (a, a))
                lines.append("RUN echo $%s $%sX ${%s}" % (a, a, a))
        # includes of folders and files, possibly overlapping
        for _ in range(rng.randint(1, 5)):
            if rng.random() < 0.5:
                p = rng.choice(tops)
                lines.append(include_line(rng, include_spelling(rng, p, True)))
            else:
                p = rng.choice(shared_files)
                lines.append(include_line(rng, include_spelling(rng, p, False)))
            if rng.random() < 0.3:
                lines.append("COPY topsrcdir/%s /opt/%d" % (p, rng.randint(0, 9)))
        if done_defs and rng.random() < 0.2:  # another image's folder, raw Dockerfile and all
            lines.append(include_line(rng, D + rng.choice(done_defs)))
        if link_file and rng.random() < 0.3:
            lines.append(include_line(rng, link_file))
        if link_dir and rng.random() < 0.3:
            lines.append(include_line(rng, link_dir))
        if rng.random() < 0.2:  # include a __pycache__ folder itself: only its children are pruned
            pyc = "src/pyc-top/__pycache__"
            if not os.path.exists(t.path(pyc)):
                t.write(pyc + "/top.pyc")
                t.write(pyc + "/__pycache__/nested.pyc")
            lines.append(include_line(rng, pyc))
        if rng.random() < 0.3:
            lines += ["", "   ", "\t# %include does/not/exist/tab"]
        # decoys that are plain comments
        if rng.random() < 0.5:
            lines.append("#  %include does/not/exist")
        if rng.random() < 0.5:
            lines.append(" # %include does/not/exist/either")
        if rng.random() < 0.3:
            lines.append("# ünïcødé comment 名前 😀")
        lines.append("RUN true")
        if rng.random() < 0.3:
            lines.append("VOLUME /builds/worker/checkouts")

        r = rng.random()
        if r < 0.55:
            text = "\n".join(lines)
        elif r < 0.8:
            text = "\r\n".join(lines)
        elif r < 0.92:  # mixed endings
            text = "".join(line + rng.choice(["\n", "\r\n"]) for line in lines[:-1]) + lines[-1]
        else:  # lone CRs (universal newlines turn them into line breaks)
            text = "".join(line + rng.choice(["\n", "\r"]) for line in lines[:-1]) + lines[-1]
        if rng.random() < 0.8:
            text += "\r\n" if "\r\n" in text and rng.random() < 0.7 else "\n"
        if rng.random() < 0.15:  # the Dockerfile is a symlink to the real one (followed by taskgraph)
            t.write(ctx + "/Dockerfile.real", text, rng.choice([0o644, 0o755]))
            t.symlink(ctx + "/Dockerfile", ctx + "/Dockerfile.real")
        else:
            t.write(ctx + "/Dockerfile", text, rng.choice([0o644, 0o644, 0o755, 0o664]))
        if rng.random() < 0.2 and shared_files:  # a hard link: just another regular file
            src = rng.choice(shared_files)
            if not os.path.lexists(t.path(ctx + "/hardlink")):
                os.link(t.path(src), t.path(ctx + "/hardlink"))

        # context files
        t.folder(ctx + "/files", depth=rng.randint(0, 3), nfiles=rng.randint(1, 8))
        for n in rng.sample(ASCII_NAMES + UNICODE_NAMES, rng.randint(1, 5)):
            if not os.path.lexists(t.path(ctx + "/" + n)):
                t.write(ctx + "/" + n)
        t.boundary_names(ctx, "")
        if rng.random() < 0.5:
            t.write(ctx + "/__pycache__/c.cpython-311.pyc")
        if rng.random() < 0.3:
            t.write(ctx + "/__pycache__file-lookalike")
            t.write(ctx + "/sub/__pycache__", b"a *file* named __pycache__ is kept")
        if rng.random() < 0.2:
            t.write(ctx + "/sub/Dockerfile", "FROM scratch\n# %include not/processed\n")
        t.links(ctx, rng.randint(0, 3))
        if rng.random() < 0.4:
            t.dir_link(ctx)
        if rng.random() < 0.2:
            # a context file with the archive name of an include: the include wins
            p = rng.choice(shared_files)
            t.write(ctx + "/topsrcdir/" + p, b"shadowed by the include")
            lines_extra = "# %include " + p + "\n"
            with open(t.path(ctx + "/Dockerfile"), "ab") as f:
                f.write(("\n" if not text.endswith("\n") else "").encode() + lines_extra.encode())
        done_defs.append(d)

    # a definition folder that is a symlink to another one (os.walk follows a symlinked top)
    if rng.random() < 0.3:
        target = rng.choice(defs)
        alias = "alias-" + target
        os.symlink(target, t.path(D + alias))
        img = {"name": alias + "-img", "definition": alias}
        args = {a: rng.choice(ARCH_VALUES) if a == "ARCH" else rng.choice(FLAVOR_VALUES) if a == "FLAVOR"
                else random_value(rng) for a in def_args[target]}
        if args:
            img["args"] = args
        if rng.random() < 0.5:
            img["parent"] = rng.choice(images)["name"]
        images.append(img)

    # ------------------------------------------------------------ kind.yml
    out = [
        "loader: taskgraph.loader.transform:loader",
        "transforms:",
        "  - taskgraph.transforms.docker_image:transforms",
        "  - taskgraph.transforms.cached_tasks:transforms",
        "  - taskgraph.transforms.task:transforms",
        "tasks:",
    ]
    for img in images:
        out.append("  %s:" % img["name"])
        out.append("    symbol: I(%s)" % img["name"])
        if img["definition"] != img["name"]:
            out.append("    definition: %s" % img["definition"])
        if img.get("parent"):
            out.append("    parent: %s" % img["parent"])
        if "args" in img:
            if not img["args"]:
                out.append("    args: {}")
            else:
                out.append("    args:")
                for k, v in img["args"].items():
                    out.append("      %s: %s" % (k, yaml_str(v)))
    t.write("taskcluster/kinds/docker-image/kind.yml", "\n".join(out) + "\n", 0o644)
    return images


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("seed", type=int)
    ap.add_argument("dest")
    ap.add_argument("--max-mb", type=int, default=12, help="cap on the bytes of file content (default 12)")
    a = ap.parse_args()
    images = generate(a.seed, os.path.abspath(a.dest), a.max_mb)
    print(json.dumps({"seed": a.seed, "dest": os.path.abspath(a.dest), "images": [i["name"] for i in images]}))


if __name__ == "__main__":
    sys.exit(main())
