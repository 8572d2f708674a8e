import json, os, sys
root = "/work/main/crates/kiln-dockerfile/tests/corpus"
cases = {}
def case(name, dockerfile, pins, expect=None, error=None, options=None):
    cases[name] = (dockerfile, pins, expect, error, options)

SH = ["/bin/sh", "-c"]
# ---- syntax ----
case("syntax-escape-backtick", "# escape=`\nFROM mcr.microsoft.com/windows/servercore\nRUN dir `\n    C:\\Windows\nWORKDIR C:\\app\n",
     "BuildKit parser: `# escape=` switches the line-continuation and expansion escape to backtick, so backslashes are literal",
     expect={"escape": "`", "directives": {"escape": "`"}, "stages": [{"instructions": [
         {"keyword": "RUN", "args": {"argv": SH + ["dir     C:\\Windows"]}, "location": {"start_line": 3, "end_line": 4}},
         {"keyword": "WORKDIR", "args": {"value": "/C:\\app"}}]}]})
case("syntax-directives-case-insensitive", "#  SYNTAX = docker/dockerfile:1.7\n# Check=skip=all\nFROM alpine\n",
     "BuildKit directives: names are case-insensitive, blanks around = are allowed",
     expect={"directives": {"syntax": "docker/dockerfile:1.7", "check": "skip=all", "escape": None}})
case("syntax-directive-after-comment-ignored", "# hello\n# escape=`\nFROM alpine\nRUN echo a \\\n  b\n",
     "BuildKit directives: the first non-directive line (here a plain comment) ends directive parsing",
     expect={"escape": "\\", "stages": [{"instructions": [{"args": {"argv": SH + ["echo a   b"]}}]}]})
case("syntax-comments-in-continuation", "FROM alpine\nRUN apk add \\\n# the compiler\n    gcc \\\n\n    musl-dev\n",
     "BuildKit parser: comment lines inside a continuation are dropped; empty continuation lines are dropped with a NoEmptyContinuation warning",
     expect={"warnings": [{"line": 2, "rule": "NoEmptyContinuation"}], "stages": [{"instructions": [
         {"args": {"argv": SH + ["apk add     gcc     musl-dev"]}, "location": {"start_line": 2, "end_line": 6}}]}]})
case("syntax-keywords-case-insensitive", "from alpine as Builder\nrun echo hi\nFrom builder\n",
     "BuildKit: instruction keywords are case-insensitive and stage names are lowercased",
     expect={"stages": [{"name": "builder", "instructions": [{"keyword": "RUN"}]}, {"base": {"kind": "stage", "index": 0}}]})
case("syntax-exec-vs-shell", "FROM alpine\nCMD [\"nginx\", \"-g\", \"daemon off;\"]\nENTRYPOINT /docker-entrypoint.sh  start\n",
     "BuildKit: JSON array is exec form; anything else is wrapped in the SHELL (default /bin/sh -c); ENTRYPOINT keeps a CMD set in the same stage",
     expect={"stages": [{"instructions": [
         {"form": "exec", "args": {"argv": ["nginx", "-g", "daemon off;"]}},
         {"form": "shell", "args": {"argv": SH + ["/docker-entrypoint.sh  start"]}}],
         "config": {"entrypoint": SH + ["/docker-entrypoint.sh  start"], "cmd": ["nginx", "-g", "daemon off;"]}}]})
case("syntax-invalid-json-falls-back-to-shell", "FROM alpine\nCMD [\"echo\", 'single quotes']\nRUN [\"a\",]\n",
     "BuildKit parseMaybeJSON: text that is not a valid JSON array is shell form, not an error",
     expect={"stages": [{"instructions": [
         {"form": "shell", "args": {"argv": SH + ["[\"echo\", 'single quotes']"]}},
         {"form": "shell", "args": {"argv": SH + ["[\"a\",]"]}}]}]})
case("syntax-bom-and-crlf", "\ufeffFROM alpine\r\nRUN echo \\\r\n  hi\r\n",
     "BuildKit parser: a UTF-8 BOM is dropped and CRLF line endings behave like LF",
     expect={"stages": [{"instructions": [{"args": {"argv": SH + ["echo   hi"]}}]}]})
# ---- heredocs ----
case("heredoc-run-single", "FROM debian\nRUN <<EOF\napt-get update\napt-get install -y curl\nEOF\n",
     "BuildKit dispatchRun: a lone heredoc without shebang is passed to the shell as the script",
     expect={"stages": [{"instructions": [{"form": "heredoc", "location": {"start_line": 2, "end_line": 5},
         "args": {"argv": SH + ["apt-get update\napt-get install -y curl\n"], "script_path": None}}]}]})
case("heredoc-run-shebang", "FROM python:3.12\nRUN <<EOF\n#!/usr/bin/env python3\nprint('hi')\nEOF\n",
     "BuildKit dispatchRun: a lone heredoc starting with #! is written to /dev/pipes/<name> and executed",
     expect={"stages": [{"instructions": [{"args": {"argv": SH + ["/dev/pipes/EOF"], "script_path": "/dev/pipes/EOF",
         "heredocs": [{"name": "EOF", "content": "#!/usr/bin/env python3\nprint('hi')\n", "expand": True}]}}]}]})
case("heredoc-run-multiple", "FROM alpine\nRUN cat <<A > /a && cat <<'B' > /b\nfirst $HOME\nA\nsecond $HOME\nB\n",
     "BuildKit heredocsFromLine: several heredocs per line are read in order; the command is reconstituted for the shell",
     expect={"stages": [{"instructions": [{"form": "heredoc", "args": {
         "argv": SH + ["cat <<A > /a && cat <<'B' > /b\nfirst $HOME\nA\nsecond $HOME\nB"],
         "heredocs": [{"name": "A", "expand": True}, {"name": "B", "expand": False}]}}]}]})
case("heredoc-chomp-tabs", "FROM alpine\nRUN <<-EOT\n\techo one\n\t\techo two\n\tEOT\n",
     "BuildKit: <<- strips leading tabs from body lines and from the terminator line",
     expect={"stages": [{"instructions": [{"args": {"argv": SH + ["echo one\necho two\n"]}}]}]})
case("heredoc-copy-expansion", "FROM alpine\nARG VERSION=1.2\nCOPY <<EOF /etc/version\nv=$VERSION \"quoted\" \\$literal\nEOF\nCOPY <<\"EOF\" /etc/raw\nv=$VERSION\nEOF\n",
     "BuildKit ExpandRaw: COPY heredoc bodies expand variables (quotes kept literally) unless the delimiter is quoted",
     expect={"stages": [{"instructions": [{"keyword": "ARG"},
         {"form": "heredoc", "args": {"sources": [], "dest": "/etc/version", "heredocs": [{"name": "EOF", "content": "v=1.2 \"quoted\" $literal\n", "expand": True}]}},
         {"args": {"heredocs": [{"content": "v=$VERSION\n", "expand": False}]}}]}]})
case("heredoc-copy-several-files", "FROM alpine\nCOPY <<one.txt <<two.txt /data/\nfirst\none.txt\nsecond\ntwo.txt\n",
     "BuildKit parseSourcesAndDest: each heredoc source becomes a file named after its delimiter",
     expect={"stages": [{"instructions": [{"args": {"dest": "/data/", "heredocs": [
         {"name": "one.txt", "content": "first\n"}, {"name": "two.txt", "content": "second\n"}]}}]}]})
case("heredoc-not-in-exec-form", "FROM alpine\nRUN [\"echo\", \"<<EOF\"]\nLABEL a=b\n",
     "BuildKit canContainHeredoc: heredocs are only recognised in shell form",
     expect={"stages": [{"instructions": [{"form": "exec", "args": {"argv": ["echo", "<<EOF"]}}, {"keyword": "LABEL"}]}]})
case("heredoc-onbuild", "FROM alpine\nONBUILD RUN <<EOF\necho child\nEOF\n",
     "BuildKit: ONBUILD RUN can carry a heredoc; the trigger stores the body after the line",
     expect={"stages": [{"config": {"onbuild": ["RUN <<EOF\necho child\nEOF"]}}]})
# ---- flags ----
case("flags-copy-all", "FROM alpine AS src\nFROM alpine\nARG OWNER=app\nCOPY --from=src --chown=${OWNER}:${OWNER} --chmod=0755 --link --parents --exclude=*.md --exclude=tmp/ /a/ /b/ /dst/\n",
     "BuildKit CopyCommand.Expand: --chown/--chmod/--exclude and paths are expanded; --from is not",
     expect={"stages": [{}, {"depends_on": [0], "instructions": [{}, {"flags": {"from": "src", "link": True, "exclude": ["*.md", "tmp/"]},
         "args": {"from": {"kind": "stage", "index": 0, "name": "src"}, "chown": "app:app", "chmod": "0755", "link": True, "parents": True,
                  "exclude": ["*.md", "tmp/"], "sources": ["/a/", "/b/"], "dest": "/dst/"}}]}]})
case("flags-add-git-checksum", "FROM alpine\nARG SUM=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d\nADD --keep-git-dir=true https://github.com/moby/buildkit.git#v0.10.1 /buildkit\nADD --checksum=$SUM --unpack=false https://example.com/a.tar.gz /\n",
     "BuildKit AddCommand: --keep-git-dir is boolean, --checksum is expanded",
     expect={"stages": [{"instructions": [{}, {"args": {"keep_git_dir": True, "sources": ["https://github.com/moby/buildkit.git#v0.10.1"]}},
         {"args": {"checksum": "sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d", "unpack": False}}]}]})
case("flags-run-mounts", "FROM golang:1.22 AS deps\nFROM golang:1.22\nARG CACHE=/root/.cache/go-build\nRUN --mount=type=cache,target=$CACHE,sharing=locked \\\n    --mount=type=bind,from=deps,source=/go/pkg,target=/go/pkg \\\n    --mount=type=tmpfs,target=/tmp,size=64m \\\n    --mount=type=secret,id=netrc,required \\\n    --mount=type=ssh \\\n    --network=none --security=sandbox go build ./...\n",
     "BuildKit parseMount: mount values are expanded; cache id defaults to the target; bind mounts are read-only by default; from= links the stage",
     expect={"stages": [{"index": 0}, {"depends_on": [0], "instructions": [{}, {"args": {
         "network": "none", "security": "sandbox", "argv": SH + ["go build ./..."],
         "mount_sources": [{"kind": "stage", "index": 0}],
         "mounts": [
             {"type": "cache", "target": "/root/.cache/go-build", "id": "/root/.cache/go-build", "sharing": "locked", "readonly": False},
             {"type": "bind", "from": "deps", "source": "/go/pkg", "target": "/go/pkg", "readonly": True},
             {"type": "tmpfs", "target": "/tmp", "size": 67108864},
             {"type": "secret", "id": "netrc", "target": "/run/secrets/netrc", "required": True},
             {"type": "ssh", "id": "default"}]}}]}]})
case("flags-double-dash-ends-flags", "FROM alpine\nRUN -- --version\n",
     "BuildKit extractBuilderFlags: a lone -- ends the flags",
     expect={"stages": [{"instructions": [{"flags": {}, "args": {"argv": SH + ["--version"]}}]}]})
# ---- instructions ----
case("instr-every-kind", """FROM debian:bookworm-slim
MAINTAINER Jane Doe <jane@example.com>
LABEL org.opencontainers.image.title="kiln test" version=1
ENV LANG=C.UTF-8 \\
    PATH=/opt/app/bin:$PATH
EXPOSE 80 443/tcp 53/udp 8000-8001
VOLUME ["/data", "/logs"]
VOLUME /cache /tmp/x
WORKDIR /opt
WORKDIR app/../app
USER app:app
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=30s --timeout=5s --start-period=1m --retries=3 CMD curl -f http://localhost/ || exit 1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN echo ready | tee /tmp/ready
ONBUILD COPY . /src
CMD ["app", "serve"]
""", "BuildKit dispatch*: each instruction updates the image config; SHELL changes later shell-form commands",
     expect={"stages": [{"config": {
         "author": "Jane Doe <jane@example.com>",
         "labels": {"org.opencontainers.image.title": "kiln test", "version": "1"},
         "env": ["PATH=/opt/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"],
         "exposed_ports": ["443/tcp", "53/udp", "80/tcp", "8000/tcp", "8001/tcp"],
         "volumes": ["/cache", "/data", "/logs", "/tmp/x"],
         "workdir": "/opt/app", "user": "app:app", "stop_signal": "SIGQUIT",
         "healthcheck": {"test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"], "interval": 30000000000, "timeout": 5000000000, "start_period": 60000000000, "retries": 3},
         "shell": ["/bin/bash", "-o", "pipefail", "-c"],
         "onbuild": ["COPY . /src"], "cmd": ["app", "serve"]},
         "instructions": [{"keyword": "MAINTAINER"}, {"keyword": "LABEL"}, {"keyword": "ENV", "location": {"start_line": 4, "end_line": 5}},
             {"keyword": "EXPOSE"}, {"keyword": "VOLUME", "form": "exec"}, {"keyword": "VOLUME", "form": "shell"},
             {"keyword": "WORKDIR", "args": {"value": "/opt"}}, {"keyword": "WORKDIR", "args": {"value": "/opt/app"}},
             {"keyword": "USER"}, {"keyword": "STOPSIGNAL"}, {"keyword": "HEALTHCHECK", "form": "shell"}, {"keyword": "SHELL"},
             {"keyword": "RUN", "args": {"argv": ["/bin/bash", "-o", "pipefail", "-c", "echo ready | tee /tmp/ready"]}},
             {"keyword": "ONBUILD", "args": {"value": "COPY . /src"}}, {"keyword": "CMD"}]}]})
case("instr-healthcheck-none-and-exec", "FROM alpine\nHEALTHCHECK CMD [\"/bin/check\", \"--quick\"]\nHEALTHCHECK NONE\n",
     "BuildKit parseHealthConfig: exec form becomes [CMD, ...]; NONE disables",
     expect={"stages": [{"instructions": [{"form": "exec", "args": {"healthcheck": {"test": ["CMD", "/bin/check", "--quick"]}}},
         {"form": None, "args": {"healthcheck": {"test": ["NONE"]}}}], "config": {"healthcheck": {"test": ["NONE"]}}}]})
case("instr-entrypoint-resets-cmd", "FROM nginx AS a\nCMD [\"x\"]\nFROM a\nENTRYPOINT [\"/e\"]\nFROM a\nCMD [\"y\"]\nENTRYPOINT [\"/e\"]\n",
     "BuildKit dispatchEntrypoint: ENTRYPOINT clears an inherited CMD unless CMD was set in the same stage",
     options={"target": None},
     expect={"stages": [{"config": {"cmd": ["x"]}}, {"config": {"cmd": None, "entrypoint": ["/e"]}}, {"config": {"cmd": ["y"], "entrypoint": ["/e"]}}]})
# ---- expansion and scoping ----
case("env-legacy-form-with-spaces", "FROM alpine\nENV GREETING hello   big \"world\"\nLABEL description a label  value\n",
     "BuildKit parseNameVal: without = the first word is the key and the whole rest (spaces kept, quotes removed by expansion) is the value",
     expect={"stages": [{"instructions": [{"args": {"pairs": [{"key": "GREETING", "value": "hello   big world"}]}},
         {"args": {"pairs": [{"key": "description", "value": "a label  value"}]}}]}]})
case("env-same-line-sees-old-value", "FROM alpine\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n",
     "Dockerfile reference (ENV): all words of one ENV are expanded before any is set, so def=hello and ghi=bye",
     expect={"stages": [{"config": {"env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "abc=bye", "def=hello", "ghi=bye"]}}]})
case("arg-same-line-sees-new-value", "FROM alpine\nARG A=1 B=${A}2\nRUN true\n",
     "BuildKit dispatchArg: ARG values are added one by one, so B sees the A declared before it",
     expect={"stages": [{"instructions": [{"args": {"args": [{"name": "A", "value": "1"}, {"name": "B", "value": "12"}]}},
         {"args": {"env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=1", "B=12"]}}]}]})
case("arg-global-only-in-from", "ARG TAG=3.19\nARG UNUSED\nFROM alpine:${TAG}\nRUN echo tag=$TAG\nARG TAG\nRUN echo tag=$TAG\n",
     "Dockerfile reference (ARG before FROM): global ARGs are visible in FROM only; a bare ARG in the stage inherits the global value",
     expect={"global_args": [{"name": "TAG", "value": "3.19"}, {"name": "UNUSED", "value": None}],
             "stages": [{"base": {"kind": "image", "reference": "alpine:3.19"}, "instructions": [
                 {"args": {"env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}},
                 {"args": {"args": [{"name": "TAG", "value": "3.19"}]}},
                 {"args": {"env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TAG=3.19"]}}]}]})
case("arg-build-arg-overrides", "ARG TAG=3.19\nFROM alpine:$TAG\nARG MODE=debug\nARG UNDECLARED_DEFAULT\nRUN build --mode=$MODE\n",
     "BuildKit buildMetaArgs/dispatchArg: a --build-arg replaces the default (global and stage) and is not expanded",
     options={"build_args": {"TAG": "edge", "MODE": "$release", "OTHER": "x", "UNDECLARED_DEFAULT": "given"}},
     expect={"stages": [{"base": {"reference": "alpine:edge"}, "instructions": [
         {"args": {"args": [{"name": "MODE", "value": "$release"}]}},
         {"args": {"args": [{"name": "UNDECLARED_DEFAULT", "value": "given"}]}},
         {"args": {"env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "MODE=$release", "UNDECLARED_DEFAULT=given"]}}]}]})
case("arg-predefined-platform", "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\nARG TARGETOS TARGETARCH\nRUN GOOS=$TARGETOS GOARCH=$TARGETARCH go build\nFROM --platform=${TARGETPLATFORM} alpine\nCOPY --from=build /out /out\n",
     "BuildKit defaultArgs: BUILDPLATFORM/TARGETPLATFORM and friends are predefined globals, usable in FROM and after a bare ARG",
     options={"target_platform": "linux/arm64/v8", "build_platform": "linux/amd64"},
     expect={"stages": [{"platform": "linux/amd64", "instructions": [{"args": {"args": [{"name": "TARGETOS", "value": "linux"}, {"name": "TARGETARCH", "value": "arm64"}]}}, {}]},
                        {"platform": "linux/arm64/v8"}]})
case("arg-expansion-forms", "FROM alpine\nARG FILE=/usr/src/app/archive.tar.gz\nARG EMPTY=\nENV A=${FILE##*/} B=${FILE%.*} C=${FILE#/usr/} D=${FILE%%.*} E=${EMPTY:-default} F=${EMPTY-unset} G=${FILE:+yes} H=${NOPE+set} I='$FILE' J=\"$FILE\" K=\\$FILE L=${FILE/src/lib}\n",
     "BuildKit shell lexer: ${VAR#pat} ${VAR##pat} ${VAR%pat} ${VAR%%pat} ${VAR:-w} ${VAR-w} ${VAR:+w} ${VAR+w}, quotes and escapes",
     expect={"stages": [{"instructions": [{}, {}, {"args": {"pairs": [
         {"key": "A", "value": "archive.tar.gz"}, {"key": "B", "value": "/usr/src/app/archive.tar"},
         {"key": "C", "value": "src/app/archive.tar.gz"}, {"key": "D", "value": "/usr/src/app/archive"},
         {"key": "E", "value": "default"}, {"key": "F", "value": ""}, {"key": "G", "value": "yes"}, {"key": "H", "value": ""},
         {"key": "I", "value": "$FILE"}, {"key": "J", "value": "/usr/src/app/archive.tar.gz"}, {"key": "K", "value": "$FILE"},
         {"key": "L", "value": "/usr/lib/app/archive.tar.gz"}]}}]}]})
case("arg-not-expanded-in-run-or-cmd", "FROM alpine\nARG NAME=world\nRUN echo hello $NAME\nCMD echo $NAME\n",
     "BuildKit: RUN/CMD/ENTRYPOINT are not expanded by the frontend; the shell sees the variable (RUN gets ARGs in its env)",
     expect={"stages": [{"instructions": [{}, {"args": {"argv": SH + ["echo hello $NAME"]}}, {"args": {"argv": SH + ["echo $NAME"]}}]}]})
case("arg-stage-inherits-parent-scope", "FROM alpine AS base\nARG VERSION=1.0\nENV APP=/app\nFROM base\nRUN echo $VERSION\nWORKDIR $APP/$VERSION\n",
     "BuildKit dispatchState.init: a stage FROM another stage inherits its environment including ARG values",
     expect={"stages": [{}, {"instructions": [{"args": {"env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "VERSION=1.0", "APP=/app"]}}, {"args": {"value": "/app/1.0"}}]}]})
case("env-inherited-from-base-image", "FROM python:3.12\nENV PATH=/venv/bin:$PATH\nRUN echo $PYTHON_VERSION\nWORKDIR src\n",
     "BuildKit: ENV and WORKDIR of the base image config seed the stage; ENV accumulates",
     options={"base_images": {"python:3.12": {"env": ["PATH=/usr/local/bin:/usr/bin:/bin", "PYTHON_VERSION=3.12.4"], "workdir": "/srv"}}},
     expect={"stages": [{"config": {"env": ["PATH=/venv/bin:/usr/local/bin:/usr/bin:/bin", "PYTHON_VERSION=3.12.4"], "workdir": "/srv/src"},
         "instructions": [{}, {"args": {"env": ["PATH=/venv/bin:/usr/local/bin:/usr/bin:/bin", "PYTHON_VERSION=3.12.4"]}}, {}]}]})
case("proxy-args-are-predefined", "FROM alpine\nRUN apk add curl\n",
     "BuildKit proxyEnvFromBuildArgs: HTTP_PROXY and friends reach RUN without an ARG declaration",
     options={"build_args": {"HTTP_PROXY": "http://proxy:3128", "no_proxy": "localhost"}},
     expect={"proxy_env": {"HTTP_PROXY": "http://proxy:3128", "no_proxy": "localhost"},
             "stages": [{"instructions": [{"args": {"env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}}]}]})
case("shell-affects-later-commands", "FROM mcr.microsoft.com/powershell\nRUN echo sh\nSHELL [\"pwsh\", \"-Command\"]\nRUN Write-Host hi\nENTRYPOINT Get-Date\nCMD Get-Help\n",
     "BuildKit withShell: SHELL changes shell-form RUN, CMD and ENTRYPOINT after it",
     expect={"stages": [{"instructions": [{"args": {"argv": SH + ["echo sh"]}}, {}, {"args": {"argv": ["pwsh", "-Command", "Write-Host hi"]}},
         {"args": {"argv": ["pwsh", "-Command", "Get-Date"]}}, {"args": {"argv": ["pwsh", "-Command", "Get-Help"]}}]}]})
# ---- onbuild ----
case("onbuild-from-base-image", "FROM example/node-onbuild:20\nRUN npm test\n",
     "BuildKit initOnBuildTriggers: triggers in the base image config run first in the child and are not inherited further",
     options={"base_images": {"example/node-onbuild:20": {"onbuild": ["COPY package.json /app/", "RUN npm install"], "workdir": "/app"}}},
     expect={"stages": [{"config": {"onbuild": []}, "instructions": [
         {"keyword": "COPY", "onbuild": True, "location": {"start_line": 1}, "args": {"dest": "/app/"}},
         {"keyword": "RUN", "onbuild": True, "args": {"argv": SH + ["npm install"]}},
         {"keyword": "RUN", "onbuild": False}]}]})
case("onbuild-from-stage", "FROM alpine AS base\nONBUILD ARG GREETING=hi\nONBUILD RUN echo $GREETING\nFROM base\nRUN true\n",
     "BuildKit resolveStages: ONBUILD instructions of a stage run when another stage is built FROM it",
     expect={"stages": [{"config": {"onbuild": ["ARG GREETING=hi", "RUN echo $GREETING"]}},
                        {"config": {"onbuild": []}, "instructions": [{"keyword": "ARG", "onbuild": True}, {"keyword": "RUN", "onbuild": True}, {"keyword": "RUN", "onbuild": False,
                         "args": {"env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hi"]}}]}]})
cases["instr-entrypoint-resets-cmd"] = ("FROM nginx AS a\nCMD [\"x\"]\nFROM a\nENTRYPOINT [\"/e\"]\nFROM a\nCMD [\"y\"]\nENTRYPOINT [\"/e\"]\nCOPY --from=1 /x /x\n",) + cases["instr-entrypoint-resets-cmd"][1:]
# ---- stage graph ----
case("graph-target-prunes", "FROM golang:1.22 AS build\nRUN go build -o /app\nFROM alpine AS test\nRUN echo unused\nFROM gcr.io/distroless/static AS release\nCOPY --from=build /app /app\nFROM release AS debug\nRUN echo debug\n",
     "BuildKit allReachableStages: only the target and the stages it depends on are built",
     options={"target": "release"},
     expect={"target": {"index": 2, "name": "release"}, "pruned": [{"index": 1, "name": "test"}, {"index": 3, "name": "debug"}],
             "stages": [{"index": 0, "name": "build"}, {"index": 2, "depends_on": [0]}]})
case("graph-default-target-is-last", "FROM alpine AS a\nFROM alpine AS b\nFROM a\n",
     "BuildKit lastTarget: without --target the last stage is built",
     expect={"target": {"index": 2, "name": None}, "pruned": [{"index": 1, "name": "b"}], "stages": [{"index": 0}, {"index": 2, "base": {"kind": "stage", "index": 0, "name": "a"}}]})
case("graph-copy-from-index-and-image", "FROM alpine AS first\nRUN touch /x\nFROM alpine\nCOPY --from=0 /x /x\nCOPY --from=nginx:latest /etc/nginx/nginx.conf /etc/\nRUN --mount=from=busybox,target=/bb ls /bb\n",
     "BuildKit toCommand: a numeric --from is a stage index; a name that is no stage is an image",
     expect={"stages": [{}, {"depends_on": [0], "instructions": [{"args": {"from": {"kind": "stage", "index": 0, "name": "first"}}},
         {"args": {"from": {"kind": "image", "reference": "nginx:latest"}}}, {"args": {"mount_sources": [{"kind": "image", "reference": "busybox"}]}}]}]})
case("graph-from-later-name-is-image", "FROM app AS base\nFROM alpine AS app\n",
     "BuildKit addState: FROM only matches stages defined earlier, so a later stage name is an image reference",
     options={"target": "base"},
     expect={"stages": [{"base": {"kind": "image", "reference": "app"}}], "pruned": [{"index": 1}]})
case("graph-from-arg-stage-name", "ARG VARIANT=slim\nFROM debian:bookworm AS full\nFROM debian:bookworm-slim AS slim\nFROM ${VARIANT}\n",
     "BuildKit: FROM expands global ARGs before matching stage names",
     expect={"stages": [{"index": 1}, {"base": {"kind": "stage", "index": 1, "name": "slim"}}]})
case("graph-duplicate-stage-name-warns", "FROM alpine AS x\nFROM busybox AS x\nFROM x\n",
     "BuildKit DuplicateStageName is a lint warning; the later stage wins for references",
     expect={"warnings": [{"rule": "DuplicateStageName", "line": 2}], "stages": [{"index": 1}, {"base": {"kind": "stage", "index": 1}}]})
case("taskgraph-docker-image-parent", "ARG DOCKER_IMAGE_PARENT\nFROM $DOCKER_IMAGE_PARENT\nRUN apt-get install -y mercurial\n",
     "taskgraph: FROM $DOCKER_IMAGE_PARENT resolves to the in-tree parent image the plan supplies",
     options={"parent_image": "debian12-base:sha256-abc"},
     expect={"global_args": [{"name": "DOCKER_IMAGE_PARENT", "value": "debian12-base:sha256-abc"}],
             "stages": [{"base": {"kind": "parent", "reference": "debian12-base:sha256-abc"}}]})
# ---- errors ----
E = lambda name, df, pins, contains, line=None, column=None, options=None: case(name, df, pins, error={k: v for k, v in {"contains": contains, "line": line, "column": column}.items() if v is not None}, options=options)
E("error-empty", "", "BuildKit: the Dockerfile cannot be empty", "the dockerfile cannot be empty", 1, 1)
E("error-only-comments", "# just a comment\n\n", "BuildKit parser: file with no instructions", "file with no instructions")
E("error-no-from", "ARG A=1\n", "BuildKit: dockerfile contains no stages to build", "no stages to build", 1)
E("error-instruction-before-from", "# c\nRUN echo\nFROM alpine\n", "BuildKit: only ARG may come before the first FROM", "no build stage in current context", 2, 1)
E("error-unknown-instruction", "FROM alpine\n  COPYY a b\n", "BuildKit: unknown instruction", "unknown instruction: COPYY", 2, 3)
E("error-flag-not-valid", "FROM alpine\nRUN --chown=1 echo\n", "BuildKit BFlags: unknown flag", "unknown flag: chown", 2, 5)
E("error-flag-on-env", "FROM alpine\nENV --x=1 A=1\n", "BuildKit BFlags: instructions without flags reject any flag", "unknown flag: x", 2, 5)
E("error-duplicate-flag", "FROM alpine\nCOPY --from=a --from=b x y\n", "BuildKit BFlags: duplicate flag", "duplicate flag specified: from", 2, 15)
E("error-unterminated-heredoc", "FROM alpine\nRUN <<EOF\necho\n", "BuildKit parser: unterminated heredoc", "unterminated heredoc EOF", 2)
E("error-shell-not-json", "FROM alpine\nSHELL [\"/bin/sh\", \"-c\"\n", "BuildKit parseShell: SHELL requires JSON (unterminated JSON is not JSON)", "SHELL requires the arguments to be in json form", 2)
E("error-json-not-strings", "FROM alpine\nCMD [\"a\", 1]\n", "BuildKit parseJSON: arrays must be strings only", "arrays must be comprised of strings only", 2)
E("error-onbuild-from", "FROM alpine\nONBUILD FROM alpine\n", "BuildKit parseOnBuild: FROM isn't allowed as an ONBUILD trigger", "FROM isn't allowed as an onbuild trigger", 2)
E("error-onbuild-onbuild", "FROM alpine\nONBUILD ONBUILD RUN x\n", "BuildKit parseOnBuild: chaining ONBUILD is not allowed", "chaining onbuild", 2)
E("error-onbuild-maintainer", "FROM alpine\nONBUILD MAINTAINER me\n", "BuildKit parseOnBuild: MAINTAINER isn't allowed as an ONBUILD trigger", "MAINTAINER isn't allowed", 2)
E("error-malformed-mount", "FROM alpine\nRUN --mount=type=cache,target=/x,sharing=sometimes true\n", "BuildKit parseMount: unsupported sharing value", "unsupported sharing value \"sometimes\"", 2, 13)
E("error-mount-unknown-key", "FROM alpine\nRUN --mount=type=bind,target=/x,colour=red true\n", "BuildKit parseMount: unexpected key", "unexpected key 'colour'", 2)
E("error-mount-type", "FROM alpine\nRUN --mount=type=nfs,target=/x true\n", "BuildKit parseMount: unsupported mount type", "unsupported mount type \"nfs\"", 2)
E("error-unknown-target", "FROM alpine AS a\n", "BuildKit resolveTarget: target stage could not be found", "target stage \"nope\" could not be found", options={"target": "nope"})
E("error-cycle", "FROM alpine AS a\nCOPY --from=b /x /x\nFROM alpine AS b\nCOPY --from=a /y /y\n", "BuildKit validateCircularDependency", "circular dependency detected on stage: a", 1)
E("error-copy-from-later-stage", "FROM alpine AS a\nCOPY --from=b /x /x\nFROM alpine AS b\nRUN true\nFROM a\n", "BuildKit dispatch: cannot copy from a stage defined later", "cannot copy from stage \"b\", it needs to be defined before current stage \"a\"", 2)
E("error-copy-from-bad-index", "FROM alpine\nCOPY --from=3 /x /x\n", "BuildKit findStateByIndex: invalid stage index", "invalid stage index 3", 2)
E("error-copy-from-variable", "FROM alpine\nARG SRC=builder\nCOPY --from=$SRC /x /x\n", "BuildKit toCommand: variable expansion is not supported for --from", "variable expansion is not supported for --from", 3)
E("error-docker-image-parent-missing", "ARG DOCKER_IMAGE_PARENT\nFROM $DOCKER_IMAGE_PARENT\n", "BuildKit: base name should not be blank (taskgraph parent not supplied)", "base name ($DOCKER_IMAGE_PARENT) should not be blank", 2)
E("error-invalid-stage-name", "FROM alpine AS 1stage\n", "BuildKit parseBuildStageName: names can't start with a number", "invalid name for build stage: \"1stage\"", 1)
E("error-from-args", "FROM alpine AS\n", "BuildKit parseFrom: FROM requires either one or three arguments", "FROM requires either one or three arguments", 1)
E("error-copy-one-arg", "FROM alpine\nCOPY onlysource\n", "BuildKit parseCopy: destination could not be determined", "COPY requires at least two arguments", 2)
E("error-heredoc-destination", "FROM alpine\nCOPY a <<EOF\nx\nEOF\n", "BuildKit parseSourcesAndDest: heredoc cannot be a destination", "COPY cannot accept a heredoc as a destination", 2)
E("error-bad-substitution", "FROM alpine\nENV A=${:x}\n", "BuildKit lexer: bad substitution", "syntax error: bad substitution", 2)
E("error-required-variable", "FROM alpine\nARG VERSION\nWORKDIR /src/${VERSION:?set --build-arg VERSION}\n", "BuildKit lexer: ${VAR:?msg} fails when unset", "VERSION: set --build-arg VERSION", 3)
E("error-invalid-escape-directive", "# escape=x\nFROM alpine\n", "BuildKit directives: escape must be ` or \\", "invalid escape token 'x'", 1)
E("error-duplicate-directive", "# escape=\\\n# escape=`\nFROM alpine\n", "BuildKit directives: only one escape parser directive", "only one escape parser directive can be used", 2)
E("error-env-missing-equals", "FROM alpine\nENV A=1 B\n", "BuildKit parseNameVal: every word needs = in the key=value form", "can't find = in \"B\"", 2)
E("error-stopsignal", "FROM alpine\nSTOPSIGNAL SIGNOPE\n", "moby signal.ParseSignal", "invalid signal: SIGNOPE", 2)
E("error-expose", "FROM alpine\nEXPOSE 80/icmp\n", "go-connections nat.ParsePortSpecs", "invalid proto: icmp", 2)
E("error-healthcheck-type", "FROM alpine\nHEALTHCHECK RUN true\n", "BuildKit parseHealthConfig: unknown type", "unknown type \"RUN\" in healthcheck", 2)
E("error-healthcheck-interval", "FROM alpine\nHEALTHCHECK --interval=10us CMD true\n", "BuildKit parseHealthConfig: durations must be at least 1ms", "cannot be less than 1ms", 2)
E("error-bool-flag", "FROM alpine\nCOPY --link=yes a b\n", "BuildKit BFlags: boolean flags take true or false", "expecting boolean value for flag link, not: yes", 2, 6)
E("error-empty-volume", "FROM alpine\nARG V\nVOLUME [\"$V\"]\n", "BuildKit dispatchVolume: empty volume", "volume specified can not be an empty string", 3)
E("error-unterminated-quote", "FROM alpine\nENV A=\"unterminated\n", "BuildKit lexer: unterminated double quote", "matching double-quote", 2)
# ---- real-world, in the style of popular official images ----
case("real-go-multistage", r"""# syntax=docker/dockerfile:1
ARG GO_VERSION=1.22
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=bind,source=go.sum,target=go.sum \
    --mount=type=bind,source=go.mod,target=go.mod \
    go mod download -x
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=bind,target=. \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /bin/server ./cmd/server

FROM alpine:3.20 AS final
RUN --mount=type=cache,target=/var/cache/apk \
    apk --update add ca-certificates tzdata && update-ca-certificates
ARG UID=10001
RUN adduser --disabled-password --gecos "" --home "/nonexistent" --shell "/sbin/nologin" \
    --no-create-home --uid "${UID}" appuser
USER appuser
COPY --from=build /bin/server /bin/
EXPOSE 8000
ENTRYPOINT [ "/bin/server" ]
""", "docker init Go template: cache/bind mounts, platform args, non-root user",
     options={"target_platform": "linux/arm64"},
     expect={"directives": {"syntax": "docker/dockerfile:1"}, "stages": [
         {"name": "build", "base": {"reference": "golang:1.22-bookworm"}, "platform": "linux/amd64", "config": {"workdir": "/src"}},
         {"name": "final", "depends_on": [0], "config": {"user": "appuser", "entrypoint": ["/bin/server"], "exposed_ports": ["8000/tcp"]}}]})
case("real-rust-cargo-chef", r"""FROM lukemathwalker/cargo-chef:latest-rust-1 AS chef
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json
COPY . .
RUN cargo build --release --bin app

FROM debian:bookworm-slim AS runtime
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /app/target/release/app /usr/local/bin
ENTRYPOINT ["/usr/local/bin/app"]
""", "cargo-chef pattern: chained stage bases and COPY --from between stages",
     expect={"pruned": [], "stages": [
         {"name": "chef"}, {"name": "planner", "base": {"kind": "stage", "index": 0}, "config": {"workdir": "/app"}},
         {"name": "builder", "depends_on": [0, 1]}, {"name": "runtime", "depends_on": [2]}]})
case("real-debian-apt", r"""FROM debian:bookworm-slim

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8

RUN set -eux; \
	apt-get update; \
	apt-get install -y --no-install-recommends \
		ca-certificates \
		curl \
		gnupg \
	; \
	rm -rf /var/lib/apt/lists/*

ENV GOSU_VERSION 1.17
RUN set -eux; \
	dpkgArch="$(dpkg --print-architecture | awk -F- '{ print $NF }')"; \
	curl -fsSL -o /usr/local/bin/gosu "https://github.com/tianon/gosu/releases/download/$GOSU_VERSION/gosu-$dpkgArch"; \
	chmod +x /usr/local/bin/gosu

COPY docker-entrypoint.sh /usr/local/bin/
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["bash"]
""", "official-image style apt layer with tabs in continuations and legacy ENV form",
     expect={"stages": [{"config": {"env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LANG=C.UTF-8", "GOSU_VERSION=1.17"],
         "cmd": ["bash"], "entrypoint": ["docker-entrypoint.sh"]},
         "instructions": [{"keyword": "ENV"},
             {"keyword": "RUN", "location": {"start_line": 6, "end_line": 13}, "args": {"argv": SH + ["set -eux; \tapt-get update; \tapt-get install -y --no-install-recommends \t\tca-certificates \t\tcurl \t\tgnupg \t; \trm -rf /var/lib/apt/lists/*"]}},
             {"keyword": "ENV", "args": {"pairs": [{"key": "GOSU_VERSION", "value": "1.17"}]}}, {"keyword": "RUN"}, {"keyword": "COPY"}, {"keyword": "ENTRYPOINT"}, {"keyword": "CMD"}]}]})
case("real-alpine-nginx", r"""FROM alpine:3.20
LABEL maintainer="NGINX Docker Maintainers <docker-maint@nginx.com>"
ENV NGINX_VERSION=1.27.0
RUN set -x \
    && addgroup -g 101 -S nginx \
    && adduser -S -D -H -u 101 -h /var/cache/nginx -s /sbin/nologin -G nginx -g nginx nginx \
    && apk add --no-cache nginx=${NGINX_VERSION}-r1
COPY docker-entrypoint.sh /
COPY 10-listen-on-ipv6-by-default.sh 20-envsubst-on-templates.sh /docker-entrypoint.d/
EXPOSE 80
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/docker-entrypoint.sh"]
CMD ["nginx", "-g", "daemon off;"]
""", "nginx official image style",
     expect={"stages": [{"config": {"labels": {"maintainer": "NGINX Docker Maintainers <docker-maint@nginx.com>"}, "stop_signal": "SIGQUIT",
         "cmd": ["nginx", "-g", "daemon off;"]}, "instructions": [{}, {}, {}, {"args": {"sources": ["docker-entrypoint.sh"], "dest": "/"}},
         {"args": {"sources": ["10-listen-on-ipv6-by-default.sh", "20-envsubst-on-templates.sh"], "dest": "/docker-entrypoint.d/"}}, {}, {}, {}, {}]}]})
case("real-python-heredoc", r"""# syntax=docker/dockerfile:1.7
FROM python:3.12-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=requirements.txt,target=requirements.txt \
    python -m pip install -r requirements.txt
COPY <<-EOF /etc/app/config.toml
	[server]
	port = 8000
	workers = ${WORKERS:-2}
	EOF
RUN <<EOF bash
set -euo pipefail
useradd --create-home app
EOF
USER app
COPY --chown=app:app . .
CMD ["python", "-m", "app"]
""", "heredoc config file with <<- and an expanded default, heredoc script piped to bash",
     expect={"stages": [{"instructions": [{}, {}, {},
         {"form": "heredoc", "args": {"dest": "/etc/app/config.toml", "heredocs": [{"name": "EOF", "content": "[server]\nport = 8000\nworkers = 2\n"}]}},
         {"form": "heredoc", "args": {"argv": SH + ["<<EOF bash\nset -euo pipefail\nuseradd --create-home app\nEOF"]}},
         {}, {"args": {"chown": "app:app"}}, {}]}]})
case("real-node-multistage", r"""ARG NODE_VERSION=20
FROM node:${NODE_VERSION}-alpine AS deps
WORKDIR /usr/src/app
RUN --mount=type=bind,source=package.json,target=package.json \
    --mount=type=bind,source=package-lock.json,target=package-lock.json \
    --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev

FROM deps AS build
RUN --mount=type=cache,target=/root/.npm npm ci
COPY . .
RUN npm run build

FROM node:${NODE_VERSION}-alpine AS final
ENV NODE_ENV production
USER node
WORKDIR /usr/src/app
COPY package.json .
COPY --from=deps /usr/src/app/node_modules ./node_modules
COPY --from=build /usr/src/app/dist ./dist
EXPOSE 3000
CMD node src/index.js
""", "docker init Node template",
     expect={"stages": [{"base": {"reference": "node:20-alpine"}}, {"base": {"kind": "stage", "index": 0}}, {"depends_on": [0, 1],
         "config": {"cmd": SH + ["node src/index.js"], "user": "node", "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NODE_ENV=production"]}}]})
case("real-taskgraph-image", r"""# kiln-tree turns "# %ARG DOCKER_IMAGE_PARENT" into a real ARG before evaluation
ARG DOCKER_IMAGE_PARENT
FROM $DOCKER_IMAGE_PARENT
MAINTAINER Release Engineering <release@example.com>

VOLUME /builds/worker/checkouts
VOLUME /builds/worker/workspace

ARG TASKCLUSTER_ROOT_URL
ARG DOCKER_IMAGE_PACKAGES
RUN /usr/local/sbin/setup_packages.sh $TASKCLUSTER_ROOT_URL $DOCKER_IMAGE_PACKAGES && \
    apt-get update && \
    apt-get install -y python3-zstandard && \
    /usr/local/sbin/clean_packages.sh $DOCKER_IMAGE_PACKAGES

ENV SHELL=/bin/bash \
    HOME=/builds/worker
WORKDIR /builds/worker
CMD ["/bin/bash", "--login"]
""", "taskgraph in-tree image: parent from the plan, args supplied as build args",
     options={"parent_image": "debian12-base", "build_args": {"TASKCLUSTER_ROOT_URL": "https://tc.example.com"}},
     expect={"stages": [{"base": {"kind": "parent", "reference": "debian12-base"}, "config": {"volumes": ["/builds/worker/checkouts", "/builds/worker/workspace"], "workdir": "/builds/worker"},
         "instructions": [{}, {}, {}, {"args": {"args": [{"name": "TASKCLUSTER_ROOT_URL", "value": "https://tc.example.com"}]}},
                          {"args": {"args": [{"name": "DOCKER_IMAGE_PACKAGES", "value": None}]}}, {}, {}, {}, {}]}]})

import shutil
shutil.rmtree(root, ignore_errors=True)
os.makedirs(root)
for name, (df, pins, expect, error, options) in sorted(cases.items()):
    d = os.path.join(root, name)
    os.makedirs(d)
    with open(os.path.join(d, "Dockerfile"), "w", newline="") as f:
        f.write(df)
    c = {"pins": pins}
    if options: c["options"] = options
    if error is not None: c["error"] = error
    else: c["expect"] = expect
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(c, f, indent=2, ensure_ascii=False); f.write("\n")
print(len(cases), "cases")
