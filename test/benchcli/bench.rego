# The policy make bench-cli gives OPA: what the ClusterPolicy "bench" enforces (Pod Security
# restricted, and requests of cpu and memory and a memory limit on every container), written in
# Rego over a List of Pods. deny holds {name, rule} for each Pod and rule that fails; the
# harness checks it against Portcullis's failures on the same file.
package bench

containers(spec) := array.concat(
	array.concat(object.get(spec, "containers", []), object.get(spec, "initContainers", [])),
	object.get(spec, "ephemeralContainers", []),
)

deny contains {"name": pod.metadata.name, "rule": "pss"} if {
	some pod in input.items
	pss_fails(pod)
}

deny contains {"name": pod.metadata.name, "rule": "resources"} if {
	some pod in input.items
	some c in array.concat(object.get(pod.spec, "containers", []), object.get(pod.spec, "initContainers", []))
	resources_fail(c)
}

# Requests default to limits, as the API server defaults them.
resources_fail(c) if {
	some r in ["cpu", "memory"]
	not c.resources.requests[r]
	not c.resources.limits[r]
}

resources_fail(c) if not c.resources.limits.memory

sc(c, field) := object.get(c, ["securityContext", field], null)

podsc(pod, field) := object.get(pod.spec, ["securityContext", field], null)

# Baseline.
pss_fails(pod) if pod.spec.hostNetwork == true

pss_fails(pod) if pod.spec.hostPID == true

pss_fails(pod) if pod.spec.hostIPC == true

pss_fails(pod) if {
	some c in containers(pod.spec)
	sc(c, "privileged") == true
}

pss_fails(pod) if {
	some c in containers(pod.spec)
	some p in object.get(c, "ports", [])
	object.get(p, "hostPort", 0) != 0
}

pss_fails(pod) if {
	some v in object.get(pod.spec, "volumes", [])
	not restricted_volume(v)
}

restricted_volume(v) if {
	some k in object.keys(v)
	k in {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image", "persistentVolumeClaim", "projected", "secret"}
}

pss_fails(pod) if {
	some k, v in object.get(pod.metadata, "annotations", {})
	startswith(k, "container.apparmor.security.beta.kubernetes.io/")
	v != "runtime/default"
	not startswith(v, "localhost/")
}

pss_fails(pod) if {
	t := podsc(pod, "appArmorProfile").type
	not t in {"RuntimeDefault", "Localhost"}
}

pss_fails(pod) if {
	some c in containers(pod.spec)
	t := sc(c, "appArmorProfile").type
	not t in {"RuntimeDefault", "Localhost"}
}

pss_fails(pod) if {
	o := podsc(pod, "seLinuxOptions")
	o != null
	not selinux_ok(o)
}

pss_fails(pod) if {
	some c in containers(pod.spec)
	o := sc(c, "seLinuxOptions")
	o != null
	not selinux_ok(o)
}

selinux_ok(o) if {
	object.get(o, "type", "") in {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
	object.get(o, "user", "") == ""
	object.get(o, "role", "") == ""
}

pss_fails(pod) if {
	some c in containers(pod.spec)
	not sc(c, "procMount") in {null, "Default"}
}

pss_fails(pod) if {
	some s in object.get(pod.spec, ["securityContext", "sysctls"], [])
	not s.name in {
		"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
		"net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
		"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
		"net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
	}
}

# Restricted.
pss_fails(pod) if {
	some c in containers(pod.spec)
	sc(c, "allowPrivilegeEscalation") != false
}

pss_fails(pod) if podsc(pod, "runAsNonRoot") == false

pss_fails(pod) if {
	some c in containers(pod.spec)
	sc(c, "runAsNonRoot") == false
}

pss_fails(pod) if {
	podsc(pod, "runAsNonRoot") != true
	some c in containers(pod.spec)
	sc(c, "runAsNonRoot") != true
}

pss_fails(pod) if podsc(pod, "runAsUser") == 0

pss_fails(pod) if {
	some c in containers(pod.spec)
	sc(c, "runAsUser") == 0
}

seccomp_ok := {"RuntimeDefault", "Localhost"}

pss_fails(pod) if {
	t := podsc(pod, "seccompProfile").type
	not t in seccomp_ok
}

pss_fails(pod) if {
	some c in containers(pod.spec)
	t := sc(c, "seccompProfile").type
	not t in seccomp_ok
}

pss_fails(pod) if {
	podsc(pod, "seccompProfile") == null
	some c in containers(pod.spec)
	sc(c, "seccompProfile") == null
}

pss_fails(pod) if {
	some c in containers(pod.spec)
	not "ALL" in object.get(c, ["securityContext", "capabilities", "drop"], [])
}

pss_fails(pod) if {
	some c in containers(pod.spec)
	some cap in object.get(c, ["securityContext", "capabilities", "add"], [])
	cap != "NET_BIND_SERVICE"
}
