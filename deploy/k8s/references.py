"""What the API schemas cannot check in the manifests: that the names they use resolve.

Run by deploy/k8s/validate.sh with the files to read (needs PyYAML, which the validator's
virtualenv has). Fails, naming the resource, when
  - a workload's selector does not match its own pod template's labels;
  - a Service, PodDisruptionBudget or NetworkPolicy selects no pod of these manifests;
  - a Service's targetPort, a probe's port or a NetworkPolicy's port is no port of the pods;
  - a volume names a ConfigMap, Secret or claim, or a mount a volume, that is not defined;
  - a StatefulSet's serviceName is not a headless Service;
  - an endpoint in the environment (`tcp://<name>:<port>`) names no Service, or a port it lacks.
"""

import re
import sys

import yaml

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}
ENDPOINT = re.compile(r"tcp://([a-z0-9-]+):(\d+)")


def selects(selector, labels):
    """Whether a label selector (matchLabels / matchExpressions, or a Service's plain map)
    matches `labels`."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        present, value = e["key"] in labels, labels.get(e["key"])
        ok = {"In": present and value in e.get("values", []),
              "NotIn": not present or value not in e.get("values", []),
              "Exists": present, "DoesNotExist": not present}[e["operator"]]
        if not ok:
            return False
    return True


def main(paths):
    docs = [d for path in paths for d in yaml.safe_load_all(open(path)) if d]
    named = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    pods = [(d, d["spec"]["template"]) for d in docs if d["kind"] in WORKLOADS]
    errors = []

    def fail(doc, what):
        errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {what}")

    def ports_of(template):
        return [p for c in template["spec"]["containers"] for p in c.get("ports", [])]

    def selected(selector):
        return [t for _, t in pods if selects(selector, t["metadata"].get("labels", {}))]

    for doc, template in pods:
        labels = template["metadata"].get("labels", {})
        if not selects(doc["spec"]["selector"], labels):
            fail(doc, "selector does not match the pod template's labels")
        spec = template["spec"]
        claims = {c["metadata"]["name"] for c in doc["spec"].get("volumeClaimTemplates", [])}
        volumes = {v["name"] for v in spec.get("volumes", [])} | claims
        for v in spec.get("volumes", []):
            for source, kind, key in (("configMap", "ConfigMap", "name"),
                                      ("secret", "Secret", "secretName"),
                                      ("persistentVolumeClaim", "PersistentVolumeClaim",
                                       "claimName")):
                if source in v and (kind, v[source][key]) not in named:
                    fail(doc, f"volume {v['name']} names {kind} {v[source][key]}, not defined")
        for c in spec["containers"]:
            port_names = {p["name"] for p in c.get("ports", []) if "name" in p}
            port_numbers = {p["containerPort"] for p in c.get("ports", [])}
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    fail(doc, f"container {c['name']} mounts {m['name']}, no such volume")
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                if port is not None and port not in port_names | port_numbers:
                    fail(doc, f"{probe} of {c['name']} uses port {port}, not a container port")
            for env in c.get("env", []):
                for host, port in ENDPOINT.findall(env.get("value", "")):
                    service = named.get(("Service", host))
                    if service is None:
                        fail(doc, f"{env['name']} names Service {host}, not defined")
                    elif int(port) not in {p["port"] for p in service["spec"]["ports"]}:
                        fail(doc, f"{env['name']} names port {port} of {host}, which lacks it")
        if doc["kind"] == "StatefulSet":
            service = named.get(("Service", doc["spec"]["serviceName"]))
            if service is None or service["spec"].get("clusterIP") != "None":
                fail(doc, f"serviceName {doc['spec']['serviceName']} is no headless Service")

    for doc in docs:
        kind, spec = doc["kind"], doc.get("spec", {})
        if kind == "Service":
            targets = selected(spec["selector"])
            if not targets:
                fail(doc, "selects no pod")
            offered = [p for t in targets for p in ports_of(t)]
            for p in spec["ports"]:
                target = p.get("targetPort", p["port"])
                if not any(target in (o.get("name"), o["containerPort"]) for o in offered):
                    fail(doc, f"targetPort {target} is no port of the pods it selects")
        elif kind in ("PodDisruptionBudget", "NetworkPolicy"):
            key = "selector" if kind == "PodDisruptionBudget" else "podSelector"
            targets = selected(spec[key])
            if not targets:
                fail(doc, "selects no pod")
            offered = {o["containerPort"] for t in targets for o in ports_of(t)}
            for rule in spec.get("ingress", []):
                for p in rule.get("ports", []):
                    wanted = range(p["port"], p.get("endPort", p["port"]) + 1)
                    if not offered & set(wanted):
                        fail(doc, f"port {p['port']} is no port of the pods it selects")

    for error in errors:
        print(f"ERROR {error}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
