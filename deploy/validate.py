"""Offline checks of deploy/, run by deploy/validate.sh inside its venv.

Kubernetes manifests against the schemas that kubernetes-validate ships
(strict: unknown fields are errors) plus the references between them; the
compose file's services, volumes, secrets and mounts against each other; the
Dockerfiles' structure; the collector config; every YAML block in deploy/*.md.
Any network use is an error: the schemas must come from the installed package.
"""

import json
import re
import socket
import sys
from pathlib import Path

import kubernetes_validate
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

K8S_VERSION = sys.argv[1] if len(sys.argv) > 1 else "1.34.0"
ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"

errors = []
counts = {}


def fail(where, message):
    errors.append(f"{where}: {message}")


def count(what, n=1):
    counts[what] = counts.get(what, 0) + n


def rel(path):
    return path.relative_to(ROOT)


# --- no network ----------------------------------------------------------


def _no_network(*args, **kwargs):
    raise RuntimeError("deploy/validate.py must not use the network (schemas come from kubernetes-validate)")


socket.socket = _no_network
socket.create_connection = _no_network
socket.getaddrinfo = _no_network


# --- YAML that refuses duplicate keys --------------------------------------


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (PyYAML keeps
    the last silently). `<<` merges may still override."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_all(path):
    try:
        return [d for d in yaml.load_all(path.read_text(), Loader=StrictLoader) if d is not None]
    except yaml.YAMLError as e:
        fail(rel(path), f"YAML: {e}")
        return []


def load(path):
    docs = load_all(path)
    if len(docs) != 1:
        if docs:
            fail(rel(path), f"expected one YAML document, found {len(docs)}")
        return None
    return docs[0]


# --- the binaries' environment variables -----------------------------------


def known_env():
    names = set()
    for args in ("authority/src/args.rs", "verifier/src/args.rs"):
        names |= set(re.findall(r'env = "(TALLY_[A-Z0-9_]+)"', (ROOT / args).read_text()))
    if not names:
        fail("args.rs", "no TALLY_* environment variables found: has the flag syntax changed?")
    return names


ENV = known_env()


def check_env_name(where, name):
    if name.startswith(("TALLY_AUTHORITY_", "TALLY_VERIFIER_")) and name not in ENV:
        fail(where, f"{name} is not a flag of tally-authority or tally-verifier (authority/src/args.rs, verifier/src/args.rs)")


# --- Kubernetes -------------------------------------------------------------


def pod_spec(obj):
    if obj.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return obj["spec"]["template"]["spec"]
    if obj.get("kind") == "Pod":
        return obj["spec"]
    return None


def template_labels(obj):
    return (obj["spec"]["template"].get("metadata") or {}).get("labels") or {}


def k8s_sets():
    """The two deployments: deploy/k8s/ (the authority on SQLite), and the
    same with deploy/k8s-postgres/ in place of its authority.yaml (on
    PostgreSQL). Each is checked whole, as it would be applied."""
    sqlite = sorted((DEPLOY / "k8s").rglob("*.y*ml"))
    postgres = [f for f in sqlite if f.name != "authority.yaml"] + sorted((DEPLOY / "k8s-postgres").rglob("*.y*ml"))
    return [("SQLite", sqlite), ("PostgreSQL", postgres)]


def check_k8s(files):
    if not files:
        fail("deploy/k8s", "no manifests")
    objects = []
    for path in files:
        for doc in load_all(path):
            where = f"{rel(path)}: {doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"
            try:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            except ValidationError as e:
                fail(where, f"schema (k8s {e.version}): {'.'.join(map(str, e.path)) or '<root>'}: {e.message}")
            except SchemaNotFoundError as e:
                fail(where, e.message)
            except Exception as e:  # noqa: BLE001 - any failure to validate is a failure
                fail(where, f"cannot validate: {e}")
            objects.append((where, doc))
            count("Kubernetes objects")

    by_kind = {}
    for where, o in objects:
        by_kind.setdefault(o.get("kind"), []).append((where, o))
    names = lambda kind: {o["metadata"]["name"] for _, o in by_kind.get(kind, [])}  # noqa: E731
    namespaces = names("Namespace")
    for where, o in objects:
        ns = o.get("metadata", {}).get("namespace")
        if o.get("kind") != "Namespace" and ns not in namespaces:
            fail(where, f"namespace {ns!r} is not one of the Namespaces in deploy/k8s ({sorted(namespaces)})")

    workloads = [(w, o) for w, o in objects if pod_spec(o) is not None]
    secrets = names("Secret")
    services = names("Service")
    for where, o in workloads:
        spec = o["spec"]
        labels = template_labels(o)
        for k, v in (spec.get("selector", {}).get("matchLabels") or {}).items():
            if labels.get(k) != v:
                fail(where, f"selector {k}={v} does not match the pod template's labels")
        if o["kind"] == "StatefulSet" and spec.get("serviceName") not in services:
            fail(where, f"serviceName {spec.get('serviceName')!r} is not a Service here")
        pod = pod_spec(o)
        psc = pod.get("securityContext") or {}
        if psc.get("runAsNonRoot") is not True or not psc.get("runAsUser"):
            fail(where, "pod securityContext must set runAsNonRoot: true and a non-zero runAsUser")
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates") or []}
        for v in volumes.values():
            s = v.get("secret")
            if s and s["secretName"] not in secrets and not s.get("optional"):
                fail(where, f"volume {v['name']} uses Secret {s['secretName']!r}, which deploy/k8s does not define")
        for claim in claims:
            if claim in volumes:
                fail(where, f"{claim} is both a volume and a volumeClaimTemplate")
        for kind, containers in (("initContainer", pod.get("initContainers") or []), ("container", pod["containers"])):
            for c in containers:
                cw = f"{where} {kind} {c['name']}"
                ports = {p["containerPort"] for p in c.get("ports") or []}
                csc = c.get("securityContext") or {}
                if csc.get("allowPrivilegeEscalation") is not False or "ALL" not in (csc.get("capabilities") or {}).get("drop", []):
                    fail(cw, "securityContext must set allowPrivilegeEscalation: false and drop ALL capabilities")
                if not (c.get("resources") or {}).get("requests"):
                    fail(cw, "no resource requests")
                for m in c.get("volumeMounts") or []:
                    if m["name"] not in volumes and m["name"] not in claims:
                        fail(cw, f"volumeMount {m['name']!r} names no volume")
                for e in c.get("env") or []:
                    check_env_name(cw, e["name"])
                    ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                    if ref and ref["name"] not in secrets:
                        fail(cw, f"env {e['name']} uses Secret {ref['name']!r}, which deploy/k8s does not define")
                if kind == "container" and o["kind"] != "Job":
                    for probe in ("readinessProbe", "livenessProbe"):
                        p = c.get(probe)
                        if not p:
                            fail(cw, f"no {probe}")
                        elif "grpc" in p and p["grpc"]["port"] not in ports:
                            fail(cw, f"{probe} port {p['grpc']['port']} is not a containerPort")
                    count("containers with probes")

    for where, svc in by_kind.get("Service", []):
        selector = svc["spec"].get("selector") or {}
        matched = [o for _, o in workloads if all(template_labels(o).get(k) == v for k, v in selector.items())]
        if not matched:
            fail(where, f"selector {selector} matches no workload in deploy/k8s")
            continue
        port_names = {p.get("name") for o in matched for c in pod_spec(o)["containers"] for p in c.get("ports") or []}
        port_numbers = {p["containerPort"] for o in matched for c in pod_spec(o)["containers"] for p in c.get("ports") or []}
        for p in svc["spec"]["ports"]:
            target = p.get("targetPort", p["port"])
            if target not in port_names and target not in port_numbers:
                fail(where, f"targetPort {target!r} is not a container port of {[o['metadata']['name'] for o in matched]}")


# --- compose ----------------------------------------------------------------


def url_host(value):
    m = re.match(r"^[a-z]+://([^:/]+)", value) or re.match(r"^([a-z][a-z0-9-]*):\d+$", value)
    return m.group(1) if m else None


def merge(base, override):
    """A compose override applied as `docker compose -f base -f override`
    does: mappings merged key by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = merge(base.get(k), v) if k in base else v
        return out
    return override


def compose_files():
    """compose.yaml alone (SQLite), and with compose.postgres.yaml over it."""
    base = load(DEPLOY / "compose.yaml")
    over = load(DEPLOY / "compose.postgres.yaml")
    return [("deploy/compose.yaml", base), ("deploy/compose.yaml + compose.postgres.yaml", merge(base, over))]


def check_compose(where, compose):
    if not isinstance(compose, dict):
        fail(where, "not a mapping")
        return set()
    services = compose.get("services") or {}
    volumes = set((compose.get("volumes") or {}).keys())
    secrets = compose.get("secrets") or {}
    if not services:
        fail(where, "no services")
    used_volumes, used_secrets = set(), set()
    for name, s in services.items():
        sw = f"{where}: service {name}"
        count("compose services")
        if "image" not in s and "build" not in s:
            fail(sw, "neither image nor build")
        build = s.get("build")
        if build:
            context = (DEPLOY / build.get("context", ".")).resolve()
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                fail(sw, f"build.dockerfile {dockerfile} does not exist")
        mounts = []
        for v in s.get("volumes") or []:
            if isinstance(v, dict):
                source, target = v.get("source"), v.get("target")
            else:
                parts = v.split(":")
                source, target = (parts[0], parts[1]) if len(parts) > 1 else (None, parts[0])
            mounts.append(target)
            if source is None:
                continue
            if source.startswith((".", "/")):
                if not (DEPLOY / source).exists():
                    fail(sw, f"bind mount source {source} does not exist")
            else:
                used_volumes.add(source)
                if source not in volumes:
                    fail(sw, f"volume {source!r} is not declared under top-level volumes")
        for sec in s.get("secrets") or []:
            sec = sec if isinstance(sec, str) else sec.get("source")
            used_secrets.add(sec)
            if sec not in secrets:
                fail(sw, f"secret {sec!r} is not declared under top-level secrets")
            mounts.append(f"/run/secrets/{sec}")
        depends = s.get("depends_on") or {}
        for dep, cond in (depends.items() if isinstance(depends, dict) else ((d, None) for d in depends)):
            if dep not in services:
                fail(sw, f"depends_on {dep!r}, which is no service")
            condition = (cond or {}).get("condition", "service_started")
            if condition not in ("service_started", "service_healthy", "service_completed_successfully"):
                fail(sw, f"depends_on {dep}: unknown condition {condition!r}")
            if condition == "service_healthy" and "healthcheck" not in services.get(dep, {}):
                fail(sw, f"depends_on {dep} being healthy, which has no healthcheck")
        env = s.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
        for key, value in env.items():
            check_env_name(sw, key)
            value = str(value)
            is_url = re.match(r"^[a-z]+://", value) is not None
            names_a_path = key.endswith("_FILE") or (key.startswith("TALLY_") and key.endswith("_DB"))
            if names_a_path and not is_url and not any(value.startswith(m.rstrip("/") + "/") or value == m for m in mounts):
                fail(sw, f"{key}={value} lies under none of its mounts {mounts}")
            host = url_host(value) if key.endswith(("_AUTHORITY", "_ADDR")) else None
            if host and host not in services:
                fail(sw, f"{key}={value}: {host!r} is not a service")
    for name in volumes - used_volumes:
        fail(where, f"volume {name!r} is declared but no service mounts it")
    for name, sec in secrets.items():
        if name not in used_secrets:
            fail(where, f"secret {name!r} is declared but no service uses it")
        if "file" in sec and not (DEPLOY / sec["file"]).parent.is_dir():
            fail(where, f"secret {name!r}: directory of {sec['file']} does not exist")
    # No dependency cycles.
    state = {}

    def visit(n, trail):
        if state.get(n) == "done":
            return
        if state.get(n) == "open":
            fail(where, f"depends_on cycle: {' -> '.join(trail + [n])}")
            return
        state[n] = "open"
        deps = services.get(n, {}).get("depends_on") or {}
        for d in deps:
            if d in services:
                visit(d, trail + [n])
        state[n] = "done"

    for n in services:
        visit(n, [])
    return set(services)


# --- OpenTelemetry collector -----------------------------------------------


def check_collector(compose_services):
    path = DEPLOY / "otel-collector.yaml"
    where = rel(path)
    config = load(path)
    if not isinstance(config, dict):
        fail(where, "not a mapping")
        return
    pipelines = (config.get("service") or {}).get("pipelines") or {}
    if not pipelines:
        fail(where, "no service.pipelines")
    for pname, p in pipelines.items():
        for section in ("receivers", "processors", "exporters"):
            for component in p.get(section) or []:
                if component not in (config.get(section) or {}):
                    fail(where, f"pipeline {pname} uses {section[:-1]} {component!r}, which is not configured")
        if not p.get("receivers") or not p.get("exporters"):
            fail(where, f"pipeline {pname} needs receivers and exporters")
    scrape = ((config.get("receivers") or {}).get("prometheus") or {}).get("config", {}).get("scrape_configs") or []
    for job in scrape:
        for sc in job.get("static_configs") or []:
            for target in sc.get("targets") or []:
                host = target.rsplit(":", 1)[0]
                count("scrape targets")
                if host not in compose_services:
                    fail(where, f"scrape target {target} is not a compose service")


# --- Dockerfiles -------------------------------------------------------------

INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
    "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}


def dockerfile_instructions(path):
    """(line, INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    out, pending, start = [], "", 0
    for n, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = n
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        word, _, args = full.partition(" ")
        out.append((start, word, args.strip()))
    if pending:
        fail(rel(path), f"line {start}: instruction continues past the end of the file")
    return out


def workspace_packages():
    packages = set()
    for manifest in ROOT.glob("*/Cargo.toml"):
        m = re.search(r'^\[package\]\s*\nname = "([^"]+)"', manifest.read_text(), re.M)
        if m:
            packages.add(m.group(1))
    return packages


def check_dockerfiles():
    files = sorted((DEPLOY / "docker").glob("*.Dockerfile"))
    if len(files) < 3:
        fail("deploy/docker", f"expected a Dockerfile per binary, found {[f.name for f in files]}")
    packages = workspace_packages()
    for path in files:
        where = rel(path)
        count("Dockerfiles")
        ins = dockerfile_instructions(path)
        stages = []  # (name, [instructions])
        for line, word, args in ins:
            if word.upper() not in INSTRUCTIONS:
                fail(where, f"line {line}: unknown instruction {word!r}")
                continue
            if word != word.upper():
                fail(where, f"line {line}: write instructions in upper case ({word})")
            if word.upper() == "FROM":
                parts = args.split()
                if not parts or (len(parts) not in (1, 3) or (len(parts) == 3 and parts[1].upper() != "AS")):
                    fail(where, f"line {line}: FROM IMAGE [AS NAME]")
                stages.append((parts[2] if len(parts) == 3 else str(len(stages)), []))
            elif not stages:
                if word.upper() != "ARG":
                    fail(where, f"line {line}: {word} before the first FROM")
            else:
                stages[-1][1].append((line, word.upper(), args))
            if word.upper() in ("CMD", "ENTRYPOINT") and args.startswith("["):
                try:
                    json.loads(args)
                except json.JSONDecodeError as e:
                    fail(where, f"line {line}: {word} is not a JSON array: {e}")
        if len(stages) < 2:
            fail(where, "not multi-stage (a builder and a runtime stage)")
            continue
        names = [s[0] for s in stages]
        for i, (_, body) in enumerate(stages):
            for line, word, args in body:
                m = re.search(r"--from=(\S+)", args) if word == "COPY" else None
                if m and m.group(1) not in names[:i]:
                    fail(where, f"line {line}: COPY --from={m.group(1)} names no earlier stage")
        builds = [a for _, body in stages[:-1] for _, w, a in body if w == "RUN" and "cargo build" in a]
        crates = {c for b in builds for c in re.findall(r"-p\s+(\S+)", b)}
        if not builds or not all("--release" in b for b in builds):
            fail(where, "no `cargo build --release` in a builder stage")
        for c in crates - packages:
            fail(where, f"cargo build -p {c}: no such workspace package")
        if not crates:
            fail(where, "cargo build names no package (-p)")
        final = stages[-1][1]
        users = [a for _, w, a in final if w == "USER"]
        if not users:
            fail(where, "the runtime stage sets no USER")
        elif users[-1].split(":")[0] in ("root", "0", ""):
            fail(where, f"the runtime stage runs as {users[-1]!r}")
        entry = [a for _, w, a in final if w == "ENTRYPOINT"]
        if not entry:
            fail(where, "the runtime stage has no ENTRYPOINT")
        else:
            copied = {a.split()[-1] for _, w, a in final if w == "COPY"}
            binary = json.loads(entry[-1])[0] if entry[-1].startswith("[") else entry[-1].split()[0]
            if binary not in copied:
                fail(where, f"ENTRYPOINT {binary} is not a file the runtime stage copies in")
        ignore = path.with_name(path.name + ".dockerignore")
        if not ignore.is_file() or "target/" not in ignore.read_text().split():
            fail(where, f"{ignore.name} missing or does not exclude target/")


# --- YAML in the docs --------------------------------------------------------


def check_markdown_yaml():
    for path in sorted(DEPLOY.glob("*.md")):
        for m in re.finditer(r"```ya?ml\n(.*?)```", path.read_text(), re.S):
            count("YAML blocks in docs")
            try:
                list(yaml.load_all(m.group(1), Loader=StrictLoader))
            except yaml.YAMLError as e:
                fail(rel(path), f"YAML block: {e}")


for _, files in k8s_sets():
    check_k8s(files)
for where, compose in compose_files():
    services = check_compose(where, compose)
check_collector(services)
check_dockerfiles()
check_markdown_yaml()

summary = ", ".join(f"{v} {k}" for k, v in counts.items())
if errors:
    print(f"deploy/validate: {len(errors)} problem(s):", file=sys.stderr)
    for e in errors:
        print(f"  {e}", file=sys.stderr)
    sys.exit(1)
print(f"deploy/validate: ok (Kubernetes {K8S_VERSION} schemas, strict; {summary})")
