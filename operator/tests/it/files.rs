//! Generated files stay in sync with the code: crds/, the chart's CRDs and
//! ClusterRole, manifests/install.yaml. `UPDATE_GOLDEN=1` rewrites them.

use std::path::PathBuf;
use std::process::Command;

use predastore_operator::manifests;

use crate::golden;

#[test]
fn crds_match_crdgen() {
    golden::check("crds/predastore.io.yaml", &manifests::crds_file());
}

#[test]
fn chart_crds_match_crdgen() {
    golden::check("charts/predastore-operator/crds/predastore.io.yaml", &manifests::crds_file());
}

#[test]
fn chart_cluster_role_matches_code() {
    golden::check(
        "charts/predastore-operator/templates/clusterrole.yaml",
        &manifests::chart_cluster_role(),
    );
}

#[test]
fn install_yaml_matches_code() {
    golden::check("manifests/install.yaml", &manifests::install_yaml());
}

#[test]
fn crdgen_prints_the_crds() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_predastore-operator")).arg("crdgen").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), predastore_operator::crd::crds_yaml());
}

#[test]
fn every_subcommand_has_help() {
    for args in [vec!["--help"], vec!["run", "--help"], vec!["crdgen", "--help"]] {
        let out =
            Command::new(env!("CARGO_BIN_EXE_predastore-operator")).args(&args).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(text.contains("Usage: predastore-operator"), "{args:?}: {text}");
    }
}

/// Helm, from PATH or where `shared/tools/install-helm.sh` puts it.
fn helm() -> Option<PathBuf> {
    let candidates = [
        PathBuf::from("helm"),
        PathBuf::from("/root/.cache/predastore-tools/helm"),
        PathBuf::from("/root/.cache/predastore/bin/helm"),
    ];
    candidates
        .into_iter()
        .find(|h| Command::new(h).arg("version").output().is_ok_and(|o| o.status.success()))
}

fn docs(yaml: &str) -> Vec<serde_json::Value> {
    yaml.split("\n---")
        .filter_map(|d| serde_yaml::from_str::<serde_json::Value>(d).ok())
        .filter(|v| v.is_object())
        .collect()
}

#[test]
fn helm_chart_renders_install_yaml() {
    let Some(helm) = helm() else {
        // CI installs helm (.ci/run); there a missing helm is a failure.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "helm_chart_renders_install_yaml: helm is not installed, and CI must run this test"
        );
        println!("SKIP helm_chart_renders_install_yaml: helm not found on PATH or in ~/.cache");
        return;
    };
    let chart = golden::workspace_root().join("charts/predastore-operator");
    let lint = Command::new(&helm).arg("lint").arg("--strict").arg(&chart).output().unwrap();
    assert!(lint.status.success(), "helm lint: {}", String::from_utf8_lossy(&lint.stdout));
    let out = Command::new(helm)
        .args(["template", "predastore-operator"])
        .arg(&chart)
        .args(["--namespace", manifests::NAMESPACE, "--include-crds"])
        .output()
        .unwrap();
    assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
    let mut rendered = docs(&String::from_utf8(out.stdout).unwrap());
    let mut expected: Vec<_> =
        manifests::install_objects().into_iter().filter(|o| o["kind"] != "Namespace").collect();
    let key = |v: &serde_json::Value| format!("{}/{}", v["kind"], v["metadata"]["name"]);
    rendered.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(
        rendered.iter().map(key).collect::<Vec<_>>(),
        expected.iter().map(key).collect::<Vec<_>>()
    );
    for (r, e) in rendered.iter().zip(&expected) {
        assert_eq!(r, e, "chart and install.yaml disagree on {}", key(e));
    }
}
