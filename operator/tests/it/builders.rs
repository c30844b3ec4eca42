//! Builders: golden YAML for fs, 3-node RS(2,1) and 5-node RS(3,2), and the
//! contracts with the binaries (config loaders, argument parsers).

use clap::Parser;
use kube::ResourceExt;
use predastore_core::config::{ClusterFile, GatewayConfig};
use predastore_operator::build::{self, Desired};
use predastore_operator::crd::PredastoreCluster;
use predastore_operator::plan::{self, PlanInputs};

use crate::fixtures;
use crate::golden;

fn render(c: &PredastoreCluster) -> Desired {
    let p = plan::plan(&c.spec, &PlanInputs::default()).expect("sample plans");
    build::desired(c, &p, &fixtures::material(p.members))
}

#[test]
fn golden_fs() {
    golden::check("operator/tests/golden/fs.yaml", &render(&fixtures::fs()).to_yaml());
}

#[test]
fn golden_three_node_rs21() {
    golden::check(
        "operator/tests/golden/three-node-rs21.yaml",
        &render(&fixtures::three()).to_yaml(),
    );
}

#[test]
fn golden_five_node_rs32() {
    golden::check(
        "operator/tests/golden/five-node-rs32.yaml",
        &render(&fixtures::five()).to_yaml(),
    );
}

fn config_files(d: &Desired) -> (GatewayConfig, Option<ClusterFile>) {
    let data = d.config_maps[0].data.clone().unwrap();
    let gw = GatewayConfig::from_toml(&data["gateway.toml"]).expect("gateway.toml parses");
    assert_eq!(gw.validate(), vec![], "gateway.toml validates");
    let cf = data.get("cluster.toml").map(|t| {
        let f = ClusterFile::from_toml(t).expect("cluster.toml parses");
        assert_eq!(f.validate(), vec![], "cluster.toml validates");
        f
    });
    (gw, cf)
}

#[test]
fn config_files_load_with_the_binaries_loaders() {
    let (gw, cf) = config_files(&render(&fixtures::fs()));
    assert_eq!(gw.storage.kind, predastore_core::config::StorageKind::Fs);
    assert_eq!(gw.storage.fs.base_path.to_str(), Some("/var/lib/predastore"));
    assert!(cf.is_none(), "fs mode has no cluster file");

    let (gw, cf) = config_files(&render(&fixtures::five()));
    assert_eq!(gw.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(
        gw.storage.distributed.unwrap().cluster_file.to_str(),
        Some("/etc/predastore/cluster.toml")
    );
    let cf = cf.unwrap();
    assert_eq!(cf.nodes.len(), 5);
    assert_eq!((cf.erasure.data_shards, cf.erasure.parity_shards), (3, 2));
    assert_eq!(cf.nodes[4].addr, "five-node-4.five-nodes.demo.svc:7000");
}

fn container_args(d: &Desired, pod: &str) -> Vec<String> {
    let spec = match pod {
        "node" => d.stateful_sets[0].spec.clone().unwrap().template.spec.unwrap(),
        _ => match d.deployments.first() {
            Some(dep) => dep.spec.clone().unwrap().template.spec.unwrap(),
            None => d.stateful_sets[0].spec.clone().unwrap().template.spec.unwrap(),
        },
    };
    let c = &spec.containers[0];
    let mut argv = c.command.clone().unwrap();
    argv.extend(c.args.clone().unwrap());
    argv
}

#[test]
fn gateway_args_pass_the_gateway_parser() {
    for c in [fixtures::fs(), fixtures::three()] {
        let argv = container_args(&render(&c), "gateway");
        assert_eq!(argv[0], "predastore-gateway");
        let cli = predastore_gateway::cli::Cli::try_parse_from(&argv)
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        assert_eq!(cli.config.unwrap().to_str(), Some("/etc/predastore/gateway.toml"));
    }
}

#[test]
fn node_args_pass_the_node_parser() {
    let argv = container_args(&render(&fixtures::three()), "node");
    assert_eq!(argv[0], "predastore-node");
    // Kubernetes expands `$(PREDASTORE_NODE_ID)` from the pod-index label
    // before the binary sees it; do the same for pod 2.
    let id = format!("$({})", predastore_operator::names::ENV_NODE_ID);
    let expanded: Vec<String> = argv.iter().map(|a| a.replace(&id, "2")).collect();
    let cli = predastore_node::cli::Cli::try_parse_from(&expanded)
        .unwrap_or_else(|e| panic!("{expanded:?}: {e}"));
    assert!(cli.command.is_none(), "serves, not a subcommand");
    assert_eq!(cli.serve.id, Some(2));
    assert_eq!(cli.serve.cluster.unwrap().to_str(), Some("/etc/predastore/cluster.toml"));
    assert_eq!(cli.serve.tls_cert.unwrap().to_str(), Some("/etc/predastore/tls/node-2.crt"));
    assert_eq!(cli.serve.tls_key.unwrap().to_str(), Some("/etc/predastore/tls/node-2.key"));
    assert_eq!(cli.serve.tls_ca.unwrap().to_str(), Some("/etc/predastore/tls/ca.crt"));
    assert!(argv.contains(&id));
}

#[test]
fn every_object_is_owned_and_labelled() {
    for c in [fixtures::fs(), fixtures::three(), fixtures::five()] {
        for o in render(&c).to_values() {
            let what = format!("{} {}", o["kind"], o["metadata"]["name"]);
            let owner = &o["metadata"]["ownerReferences"][0];
            assert_eq!(owner["uid"].as_str(), c.uid().as_deref(), "{what}");
            assert_eq!(owner["controller"], true, "{what}");
            let labels = &o["metadata"]["labels"];
            for l in [
                "app.kubernetes.io/name",
                "app.kubernetes.io/instance",
                "app.kubernetes.io/managed-by",
            ] {
                assert!(labels[l].is_string(), "{what} lacks {l}");
            }
        }
    }
}

#[test]
fn fs_mode_is_one_gateway_pod_with_a_volume_and_no_nodes() {
    let d = render(&fixtures::fs());
    assert_eq!(d.stateful_sets.len(), 1);
    let sts = d.stateful_sets[0].spec.clone().unwrap();
    assert_eq!(sts.replicas, Some(1));
    assert_eq!(sts.volume_claim_templates.unwrap().len(), 1);
    assert!(d.deployments.is_empty() && d.pdbs.is_empty());
    assert_eq!(d.secrets.len(), 1, "no TLS in fs mode");
}

#[test]
fn node_pdb_keeps_the_write_quorum() {
    let max_unavailable = |c: PredastoreCluster| {
        let d = render(&c);
        serde_json::to_value(&d.pdbs[0]).unwrap()["spec"]["maxUnavailable"].clone()
    };
    assert_eq!(max_unavailable(fixtures::three()), 1);
    // RS(3,2) reads survive two nodes down, but writes need 4 of 5 shards:
    // a drain of two would stop writes.
    assert_eq!(max_unavailable(fixtures::five()), 1);
}

#[test]
fn nodes_are_hardened_and_spread() {
    let d = render(&fixtures::five());
    let v = serde_json::to_value(&d.stateful_sets[0]).unwrap();
    let pod = &v["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(pod["topologySpreadConstraints"][0]["topologyKey"], "topology.kubernetes.io/zone");
    // The node container mounts only what its init container copied: its
    // own pair. The whole TLS Secret (no CA key in it) is mounted into
    // the init container alone, without items, so adding a node changes
    // no pod template.
    let mounts = |c: &serde_json::Value| -> Vec<String> {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().into())
            .collect()
    };
    assert!(!mounts(c).contains(&"tls-all".to_string()), "{:?}", mounts(c));
    let init = &pod["initContainers"][0];
    assert_eq!(
        (&init["args"][0], &init["args"][1]),
        (&serde_json::json!("certs"), &serde_json::json!("install"))
    );
    assert!(mounts(init).contains(&"tls-all".to_string()));
    let volumes = pod["volumes"].as_array().unwrap();
    let all = volumes.iter().find(|v| v["name"] == "tls-all").unwrap();
    assert!(all["secret"]["items"].is_null());
    let own = volumes.iter().find(|v| v["name"] == "tls").unwrap();
    assert_eq!(own["emptyDir"]["medium"], "Memory");
    let tls = d.secrets.iter().find(|s| s.metadata.name.as_deref() == Some("five-tls")).unwrap();
    assert!(!tls.data.as_ref().unwrap().contains_key("ca.key"), "the CA key never reaches a pod");
    let ca = d.secrets.iter().find(|s| s.metadata.name.as_deref() == Some("five-ca")).unwrap();
    assert!(ca.data.as_ref().unwrap().contains_key("ca.key"));
    let at = |name: &str| d.secrets.iter().position(|s| s.metadata.name.as_deref() == Some(name));
    assert!(at("five-ca") < at("five-tls"), "the key is stored before it leaves the TLS Secret");
}

#[test]
fn adding_nodes_changes_no_node_pod_template() {
    let five = fixtures::five();
    let mut six = five.clone();
    six.spec.nodes.replicas = 6;
    let template = |c: &predastore_operator::crd::PredastoreCluster| {
        let d = render(c);
        serde_json::to_value(&d.stateful_sets[0]).unwrap()["spec"]["template"].clone()
    };
    assert_eq!(template(&five), template(&six));
}
