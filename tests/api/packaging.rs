//! The files we ship for deployment, checked against the code and the configuration they
//! deploy (there is no cluster and no booted systemd here): the Kubernetes manifests in
//! `deploy/kubernetes` (probe paths are real routes, ports match the config, grace above the
//! drain, the image's user, the spool on a persistent volume, limits set, the ConfigMap is
//! `config.toml`) and scanned by checkov; the systemd unit verified by `systemd-analyze`; the
//! Dockerfile linted by hadolint. checkov and hadolint come pinned from PyPI
//! (`scripts/setup-packaging-lint.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;

use kinesis_proxy::config::Settings;
use kinesis_proxy::http::paths::{ROUTE_HEALTHZ, ROUTE_READYZ};
use serde::Deserialize;
use serde_yaml::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn root(path: &str) -> PathBuf {
    Path::new(ROOT).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The shipped config.toml, as the proxy loads it (with a key, which it ships without).
fn shipped_settings() -> Settings {
    Settings::from_sources(
        Some(("config.toml", &read("config.toml"))),
        [(
            "KINESIS_PROXY__AUTH__KEYS".to_owned(),
            "ops:a-key-for-the-check-0123".to_owned(),
        )],
    )
    .expect("the shipped config.toml is valid")
}

/// The uid the image runs as (the Dockerfile's `USER uid:gid`).
fn image_uid() -> u64 {
    read("Dockerfile")
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .and_then(|user| user.split(':').next())
        .and_then(|uid| uid.trim().parse().ok())
        .expect("the Dockerfile sets a numeric USER")
}

/// Every document of every manifest under deploy/kubernetes, with its file.
fn manifests() -> Vec<(String, Value)> {
    let mut files = Vec::new();
    let mut dirs = vec![root("deploy/kubernetes")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("deploy/kubernetes") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut documents = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("manifest");
        let name = file
            .strip_prefix(ROOT)
            .unwrap_or(&file)
            .display()
            .to_string();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"));
            if !value.is_null() {
                documents.push((name.clone(), value));
            }
        }
    }
    documents
}

fn of_kind<'a>(documents: &'a [(String, Value)], kind: &str) -> Vec<&'a (String, Value)> {
    documents
        .iter()
        .filter(|(_, d)| d["kind"] == kind)
        .collect()
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    let mut at = value;
    for key in path {
        at = &at[*key];
    }
    at.as_str()
        .unwrap_or_else(|| panic!("{path:?} is not a string"))
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_sequence()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
}

#[test]
fn the_configmap_is_the_shipped_config_toml() {
    let documents = manifests();
    let maps = of_kind(&documents, "ConfigMap");
    assert_eq!(maps.len(), 1, "one ConfigMap");
    let shipped = str_at(&maps[0].1, &["data", "config.toml"]);
    let config = read("config.toml");
    // The first line that differs, not two whole files.
    let differs = shipped
        .lines()
        .zip(config.lines())
        .position(|(a, b)| a != b)
        .or((shipped.lines().count() != config.lines().count()).then_some(0));
    assert!(
        differs.is_none() && shipped == config,
        "deploy/kubernetes/common/configmap.yaml differs from config.toml (line {:?}): run scripts/render-configmap.sh",
        differs.map(|l| l + 1)
    );
}

#[test]
fn the_workloads_match_the_routes_the_config_and_the_image() {
    let settings = shipped_settings();
    let port: u64 = settings
        .server
        .listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("server.listen has a port");
    // SIGTERM's delay (readiness off, still serving), then the drain.
    let drain_ms = settings.server.shutdown_delay_ms + settings.server.shutdown_grace_ms;
    let uid = image_uid();
    let documents = manifests();
    let workloads: Vec<_> = documents
        .iter()
        .filter(|(_, d)| d["kind"] == "Deployment" || d["kind"] == "StatefulSet")
        .collect();
    assert_eq!(workloads.len(), 2, "a Deployment and a StatefulSet");
    for (file, workload) in workloads {
        let pod = &workload["spec"]["template"]["spec"];
        let labels = &workload["spec"]["template"]["metadata"]["labels"];
        assert_eq!(
            &workload["spec"]["selector"]["matchLabels"], labels,
            "{file}: selector"
        );
        let grace_s = pod["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("{file}: terminationGracePeriodSeconds"));
        assert!(
            grace_s * 1000 >= drain_ms + 5_000,
            "{file}: terminationGracePeriodSeconds {grace_s} s is not above the delay and the drain ({drain_ms} ms) plus a margin"
        );
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{file}");
        assert_eq!(
            pod["securityContext"]["runAsUser"].as_u64(),
            Some(uid),
            "{file}: the image's user"
        );
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{file}"
        );
        assert_eq!(pod["automountServiceAccountToken"], false, "{file}");
        let containers = pod["containers"].as_sequence().expect("containers");
        assert_eq!(containers.len(), 1, "{file}");
        let c = &containers[0];
        let ports = c["ports"].as_sequence().expect("ports");
        assert_eq!(ports.len(), 1, "{file}");
        assert_eq!(ports[0]["name"], "http", "{file}");
        assert_eq!(
            ports[0]["containerPort"].as_u64(),
            Some(port),
            "{file}: the port of server.listen"
        );
        for (probe, route) in [
            ("readinessProbe", ROUTE_READYZ),
            ("livenessProbe", ROUTE_HEALTHZ),
        ] {
            assert_eq!(
                str_at(c, &[probe, "httpGet", "path"]),
                route,
                "{file}: {probe}"
            );
            assert_eq!(c[probe]["httpGet"]["port"], "http", "{file}: {probe}");
        }
        let security = &c["securityContext"];
        assert_eq!(security["allowPrivilegeEscalation"], false, "{file}");
        assert_eq!(security["readOnlyRootFilesystem"], true, "{file}");
        assert_eq!(
            security["capabilities"]["drop"],
            serde_yaml::from_str::<Value>("[ALL]").expect("yaml"),
            "{file}"
        );
        for kind in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(
                    !c["resources"][kind][resource].is_null(),
                    "{file}: resources.{kind}.{resource}"
                );
            }
        }
        // The keys file named in the environment is on the Secret's mount.
        let keys_file = env_value(c, "KINESIS_PROXY__AUTH__KEYS_FILE").expect("keys file");
        let mounts = c["volumeMounts"].as_sequence().expect("mounts");
        let mount_of = |path: &str| {
            mounts
                .iter()
                .filter(|m| path.starts_with(m["mountPath"].as_str().unwrap_or("\0")))
                .max_by_key(|m| m["mountPath"].as_str().map_or(0, str::len))
                .and_then(|m| m["name"].as_str())
                .map(str::to_owned)
        };
        let volume_kind = |name: &str| {
            pod["volumes"]
                .as_sequence()
                .and_then(|vs| vs.iter().find(|v| v["name"] == name))
                .cloned()
        };
        let keys_volume = mount_of(keys_file).expect("keys file on a mount");
        assert!(
            volume_kind(&keys_volume).is_some_and(|v| !v["secret"].is_null()),
            "{file}: the keys come from a Secret"
        );
        // The config file the proxy is told to read is the ConfigMap's.
        let args: Vec<&str> = c["args"]
            .as_sequence()
            .expect("args")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let config = args
            .windows(2)
            .find(|w| w[0] == "--config")
            .map(|w| w[1])
            .expect("--config in args");
        let config_volume = mount_of(config).expect("config file on a mount");
        assert!(
            volume_kind(&config_volume)
                .is_some_and(|v| v["configMap"]["name"] == "kinesis-proxy-config"),
            "{file}: the config file comes from the ConfigMap"
        );
    }
}

#[test]
fn the_disk_statefulset_keeps_its_spool_on_a_persistent_volume_of_its_own() {
    let settings = shipped_settings();
    let documents = manifests();
    let sets = of_kind(&documents, "StatefulSet");
    assert_eq!(sets.len(), 1);
    let (file, set) = sets[0];
    let c = &set["spec"]["template"]["spec"]["containers"][0];
    let spool_dir = env_value(c, "KINESIS_PROXY__SPOOL__DIR").expect("spool.dir set");
    assert!(
        env_value(c, "KINESIS_PROXY__STREAMS__ACK_ON_DISK").is_some_and(|s| !s.is_empty()),
        "{file}: some stream is acknowledged on disk"
    );
    let mount = c["volumeMounts"]
        .as_sequence()
        .and_then(|ms| ms.iter().find(|m| m["mountPath"] == spool_dir))
        .unwrap_or_else(|| panic!("{file}: nothing mounted at the spool dir {spool_dir}"));
    let claim = set["spec"]["volumeClaimTemplates"]
        .as_sequence()
        .and_then(|cs| cs.iter().find(|t| t["metadata"]["name"] == mount["name"]))
        .unwrap_or_else(|| panic!("{file}: the spool is not a volumeClaimTemplate"));
    assert!(
        set["spec"]["template"]["spec"]["volumes"]
            .as_sequence()
            .is_none_or(|vs| !vs.iter().any(|v| v["name"] == mount["name"])),
        "{file}: the spool must not be a pod volume (an emptyDir dies with the pod)"
    );
    let storage = str_at(claim, &["spec", "resources", "requests", "storage"]);
    let gib: u64 = storage
        .strip_suffix("Gi")
        .and_then(|n| n.parse().ok())
        .expect("storage in Gi");
    let needed = settings.spool.max_bytes + settings.spool.min_free_bytes;
    assert!(
        gib << 30 >= needed,
        "{file}: {storage} is below spool.max_bytes + spool.min_free_bytes"
    );
    // Readiness, the HPA and the PDB select these pods; the HPA scales only the Deployment.
    let hpas = of_kind(&documents, "HorizontalPodAutoscaler");
    assert_eq!(hpas.len(), 1);
    assert_eq!(hpas[0].1["spec"]["scaleTargetRef"]["kind"], "Deployment");
    let labels = &set["spec"]["template"]["metadata"]["labels"];
    for kind in ["PodDisruptionBudget"] {
        for (f, d) in of_kind(&documents, kind) {
            assert_eq!(&d["spec"]["selector"]["matchLabels"], labels, "{f}");
        }
    }
    for (f, d) in of_kind(&documents, "Service") {
        assert_eq!(&d["spec"]["selector"], labels, "{f}");
        assert_eq!(d["spec"]["ports"][0]["targetPort"], "http", "{f}");
    }
}

fn lint_tool(name: &str) -> PathBuf {
    let path = root(&format!("scripts/packaging-lint/.venv/bin/{name}"));
    assert!(
        path.exists(),
        "{} missing: run scripts/setup-packaging-lint.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

/// checkov on one target with one framework: no failed check (suppressions live in the files,
/// each with its reason).
fn checkov(target: &[&str], framework: &str) {
    let output = Command::new(lint_tool("checkov"))
        .current_dir(ROOT)
        .args(target)
        .args([
            "--framework",
            framework,
            "--compact",
            "--quiet",
            "--skip-download",
        ])
        .output()
        .expect("checkov runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("Passed checks"),
        "checkov {target:?}:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn checkov_finds_no_failed_check_in_the_kubernetes_manifests() {
    checkov(&["--directory", "deploy/kubernetes"], "kubernetes");
}

#[test]
fn checkov_finds_no_failed_check_in_the_dockerfile() {
    checkov(&["--file", "Dockerfile"], "dockerfile");
}

#[test]
fn hadolint_passes_the_dockerfile() {
    let output = Command::new(lint_tool("hadolint"))
        .arg(root("Dockerfile"))
        .output()
        .expect("hadolint runs");
    assert!(
        output.status.success(),
        "hadolint:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn the_systemd_unit_verifies_and_matches_the_configuration() {
    let unit = read("deploy/systemd/kinesis-proxy.service");
    // systemd-analyze checks that the binary exists: point the unit at the one just built.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kinesis-proxy.service");
    std::fs::write(
        &path,
        unit.replace(
            "/usr/local/bin/kinesis-proxy",
            env!("CARGO_BIN_EXE_kinesis-proxy"),
        ),
    )
    .expect("write unit");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
    // Hardened: an exposure of at most 2.0 (of 10) in systemd's own assessment.
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&path)
        .output()
        .expect("systemd-analyze security runs");
    assert!(
        output.status.success(),
        "systemd-analyze security: {}",
        String::from_utf8_lossy(&output.stdout)
    );

    let setting = |key: &str| -> Vec<&str> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .collect()
    };
    let settings = shipped_settings();
    let stop_s: u64 = setting("TimeoutStopSec")[0]
        .trim_end_matches('s')
        .parse()
        .expect("TimeoutStopSec in seconds");
    assert!(
        stop_s * 1000
            >= settings.server.shutdown_delay_ms + settings.server.shutdown_grace_ms + 5_000,
        "TimeoutStopSec {stop_s} s is not above the drain"
    );
    assert!(setting("ExecStartPre")[0].ends_with("--check"));
    let reload = setting("ExecReload");
    assert!(reload[0].ends_with("--check") && reload[1].contains("kill -HUP $MAINPID"));
    // The spool (a relative spool.dir) lands in the state directory.
    assert_eq!(settings.spool.dir, "spool");
    assert_eq!(setting("StateDirectory"), ["kinesis-proxy"]);
    assert_eq!(setting("WorkingDirectory"), ["/var/lib/kinesis-proxy"]);
    for hardening in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
        "Restart=on-failure",
    ] {
        assert!(unit.lines().any(|l| l == hardening), "{hardening}");
    }
}
