#!/usr/bin/env python3
"""Context hashes, cache digests and index routes of every docker image, computed by the real taskgraph.

Usage: python reference.py ROOT [--level N] [--pull-request] [--build-date ISO8601]
                                [--mode both|generator|direct] [--timing]

ROOT is a repository in taskgraph's layout (`.taskcluster.yml`, `taskcluster/config.yml`,
`taskcluster/kinds/docker-image/kind.yml`, `taskcluster/docker/<definition>/`). Run it with
a Python that has `taskcluster-taskgraph==24.5.1` installed and **no orjson** (the args JSON in
the digest differs with orjson; `scripts/setup-taskgraph-venv.sh` makes such a venv).

Two independent ways to ask taskgraph, both calling its own code:

* `generator`: taskgraph's TaskGraphGenerator loads the `docker-image` kind, exactly as
  `taskgraph image-digest` does, running the kind's transforms (docker_image, cached_tasks,
  task). The context hash is the task's `payload.env.HASH`, the digest is
  `attributes.cached_task.digest`, the routes and index-search come from the task.
* `direct`: `taskgraph.util.docker.generate_context_hash` per image, then the digest parts as
  `transforms/docker_image.py` and `transforms/cached_tasks.py` assemble them (context hash,
  `taskgraph.util.json.dumps(args, sort_keys=True)`, `image-builder-image:<IMAGE_BUILDER_IMAGE>`,
  sorted `docker-images.v2/<parent>/<parent digest>`, `True`), hashed and turned into routes by
  taskgraph's own `util.cached_tasks.add_optimization`.

`both` (the default) runs the two and fails if they disagree.

Prints JSON: {name: {context_hash, cache_digest, definition, parent, args, routes, lookup}},
where `routes` are the index namespaces the task writes (without the `index.` prefix) and
`lookup` the namespaces index-search tries, in order. With --timing, the seconds spent in
`generate_context_hash` are written to stderr as `{"hash_seconds": ...}` (direct mode).
"""

import argparse
import calendar
import hashlib
import logging
import os
import sys
import time


def parse_build_date(s):
    if s.isdigit():
        return int(s)
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


def check_no_orjson():
    try:
        import orjson  # noqa: F401
    except ImportError:
        return
    sys.exit(
        "reference.py: orjson is installed in this Python; taskgraph would then write the args "
        "JSON as raw UTF-8 and digests would not be the stdlib-json ones. Uninstall orjson."
    )


def check_topsrcdir(root):
    """taskgraph's topsrcdir is the nearest folder upwards with `.git` or `.hg`, else the parent
    of `taskcluster/`. A tree that is not a repository itself but sits inside one (say under
    bench/out/) would be hashed against the enclosing checkout: refuse that."""
    if any(os.path.exists(os.path.join(root, m)) for m in (".git", ".hg")):
        return
    d = os.path.dirname(root)
    while True:
        if any(os.path.exists(os.path.join(d, m)) for m in (".git", ".hg")):
            sys.exit(
                f"reference.py: {root} is inside the repository {d}; taskgraph would take {d} as "
                f"topsrcdir. Make {root} a repository of its own (git init) or move it."
            )
        parent = os.path.dirname(d)
        if parent == d:
            return
        d = parent


def tasks_for(pull_request):
    return "github-pull-request" if pull_request else "github-push"


def params_dict(level, pull_request, build_date):
    repo = "https://github.com/kiln-diff/diff"
    return {
        "level": str(level),
        "tasks_for": tasks_for(pull_request),
        "build_date": build_date,
        "pushdate": build_date,
        "head_repository": repo,
        "base_repository": repo,
        "head_rev": "a" * 40,
        "base_rev": "b" * 40,
        "head_ref": "refs/heads/main",
        "base_ref": "refs/heads/main",
        "project": "diff",
        "repository_type": "git",
        "owner": "nobody@example.com",
        "files_changed": [],
    }


def kind_tasks(root):
    from taskgraph.config import load_graph_config
    from taskgraph.util.yaml import load_yaml

    graph_config = load_graph_config(os.path.join(root, "taskcluster"))
    kind = graph_config._config.get("docker-image-kind", "docker-image")
    kind_yml = load_yaml(graph_config.kinds_dir, kind, "kind.yml")
    return graph_config, kind_yml["tasks"]


def run_direct(root, level, pull_request, build_date, timing):
    from taskgraph.transforms.cached_tasks import format_task_digest
    from taskgraph.transforms.docker_image import IMAGE_BUILDER_IMAGE
    from taskgraph.util import json as tg_json
    from taskgraph.util.cached_tasks import add_optimization
    from taskgraph.util.docker import generate_context_hash

    graph_config, tasks = kind_tasks(root)
    topsrcdir = os.path.dirname(graph_config.taskcluster_yml)

    class Config:  # the two attributes add_optimization reads from a TransformConfig
        pass

    config = Config()
    config.graph_config = graph_config
    config.params = params_dict(level, pull_request, build_date)

    out = {}
    digests = {}  # label -> "docker-images.v2/<name>/<digest>"
    hash_seconds = 0.0

    def visit(name, stack=()):
        if name in out:
            return
        if name in stack:
            raise Exception(f"parent cycle through {name}")
        task = tasks[name] or {}
        parent = task.get("parent")
        if parent:
            visit(parent, stack + (name,))
        args = dict(task.get("args") or {})
        definition = task.get("definition", name)
        nonlocal hash_seconds
        t0 = time.perf_counter()
        context_hash = generate_context_hash(
            topsrcdir, os.path.join("taskcluster", "docker", definition), args
        )
        hash_seconds += time.perf_counter() - t0
        # transforms/docker_image.py
        digest_data = [context_hash, tg_json.dumps(args, sort_keys=True)]
        digest_data.append(f"image-builder-image:{IMAGE_BUILDER_IMAGE}")
        # transforms/cached_tasks.py: dependencies' digests, then chain-of-trust
        deps = []
        if parent:
            deps.append(digests[f"docker-image-{parent}"])
        digest_data += sorted(deps)
        digest_data.append(str(True))
        taskdesc = {"attributes": {}}
        add_optimization(
            config,
            taskdesc,
            cache_type="docker-images.v2",
            cache_name=name,
            digest_data=digest_data,
        )
        cached = taskdesc["attributes"]["cached_task"]
        digests[f"docker-image-{name}"] = format_task_digest(cached)
        out[name] = {
            "context_hash": context_hash,
            "cache_digest": cached["digest"],
            "definition": definition,
            "parent": parent,
            "args": task.get("args") or {},
            "routes": [r[len("index.") :] for r in taskdesc.get("routes", []) if r.startswith("index.")],
            "lookup": taskdesc["optimization"]["index-search"],
        }

    for name in tasks:
        visit(name)
    if timing:
        import json

        print(json.dumps({"hash_seconds": hash_seconds, "images": len(out)}), file=sys.stderr)
    return out


def run_generator(root, level, pull_request, build_date):
    from taskgraph.generator import load_tasks_for_kind
    from taskgraph.parameters import Parameters

    graph_config, tasks = kind_tasks(root)
    kind = graph_config._config.get("docker-image-kind", "docker-image")
    params = Parameters(strict=False, repo_root=root, **params_dict(level, pull_request, build_date))
    loaded = load_tasks_for_kind(params, kind, root_dir=os.path.join(root, "taskcluster"))
    out = {}
    for label, task in loaded.items():
        name = task.attributes["image_name"]
        spec = tasks[name] or {}
        out[name] = {
            "context_hash": task.task["payload"]["env"]["HASH"],
            "cache_digest": task.attributes["cached_task"]["digest"],
            "definition": spec.get("definition", name),
            "parent": spec.get("parent"),
            "args": spec.get("args") or {},
            "routes": [r[len("index.") :] for r in task.task.get("routes", []) if r.startswith("index.")],
            "lookup": task.optimization["index-search"],
        }
    return out


def main():
    ap = argparse.ArgumentParser(description="taskgraph's own context hashes and cache digests")
    ap.add_argument("root")
    ap.add_argument("--level", type=int, default=3)
    ap.add_argument("--pull-request", action="store_true")
    ap.add_argument("--build-date", default="2023-11-14T22:13:20Z")
    ap.add_argument("--mode", choices=["both", "generator", "direct"], default="both")
    ap.add_argument("--timing", action="store_true")
    a = ap.parse_args()

    check_no_orjson()
    logging.basicConfig(level=logging.WARNING)
    root = os.path.abspath(a.root)
    check_topsrcdir(root)
    os.chdir(root)  # taskgraph resolves some paths against the working directory
    build_date = parse_build_date(a.build_date)

    import json

    results = {}
    if a.mode in ("both", "direct"):
        results["direct"] = run_direct(root, a.level, a.pull_request, build_date, a.timing)
    if a.mode in ("both", "generator"):
        results["generator"] = run_generator(root, a.level, a.pull_request, build_date)
    if a.mode == "both" and results["direct"] != results["generator"]:
        print("reference.py: taskgraph's generator and the direct calls disagree:", file=sys.stderr)
        print(json.dumps(results, indent=1, sort_keys=True), file=sys.stderr)
        return 3
    out = next(iter(results.values()))
    print(json.dumps(out, indent=1, sort_keys=True, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
