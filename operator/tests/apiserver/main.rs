//! The operator against a real Kubernetes control plane: etcd,
//! kube-apiserver, kube-controller-manager and kube-scheduler built from
//! upstream Go modules and started on loopback by `e2e/cluster/up.sh`
//! (issue 12, part 1). Nothing here is faked on the API side: CRD schemas
//! and CEL rules, server-side apply and field ownership, RBAC (the operator
//! runs with its own ServiceAccount token), finalizers, garbage collection
//! and namespace deletion are the API server's and controller-manager's.
//!
//! No kubelet runs in this suite; where a scenario needs pods to be Ready,
//! a hollow kubelet (harness.rs) binds them to a Node object and reports
//! them Running, as kubemark does.
//!
//! Needs go (to build the pinned binaries, kubectl among them, once),
//! openssl and python3, and etcd (else go builds it too).
//! Without them the suite prints SKIP, except under CI=true, where a
//! missing tool fails it. `PREDASTORE_E2E_KUBECONFIG` runs it against an
//! existing control plane instead; `PREDASTORE_E2E_KEEP=1` leaves the
//! started one running. An argument filters scenarios by name.

mod harness;
mod scenarios;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Command, Stdio};
use std::time::Instant;

use harness::{ControlPlane, HollowKubelet, Kubectl, Operator};

/// A scenario: its name and body.
type Scenario = (&'static str, fn(&scenarios::Env));

fn missing_tools() -> Vec<&'static str> {
    let probes: [(&str, &[&str]); 3] =
        [("go", &["version"]), ("openssl", &["version"]), ("python3", &["--version"])];
    probes
        .into_iter()
        .filter(|(tool, args)| {
            !Command::new(tool)
                .args(*args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(tool, _)| tool)
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in scenarios::ALL {
            println!("{name}: test");
        }
        return;
    }
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned();
    let missing = missing_tools();
    if !missing.is_empty() && std::env::var_os("PREDASTORE_E2E_KUBECONFIG").is_none() {
        let why = format!("the real-API-server suite needs {}", missing.join(", "));
        if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
            panic!("{why} (CI=true: a missing tool is a failure)");
        }
        println!("SKIP: {why}");
        return;
    }
    let scenarios: Vec<&Scenario> = scenarios::ALL
        .iter()
        .filter(|(name, _)| filter.as_ref().is_none_or(|f| name.contains(f.as_str())))
        .collect();
    if scenarios.is_empty() {
        return;
    }

    let dir = tempfile::Builder::new().prefix("predastore-apiserver-").tempdir().unwrap();
    let started = Instant::now();
    let cp = ControlPlane::up(dir.path());
    let admin = Kubectl { kubeconfig: cp.kubeconfig.clone() };
    scenarios::install(&admin);
    let operator = Operator::start(&admin, dir.path());
    let hollow = HollowKubelet::start(&admin, scenarios::HOLLOW_NAMESPACES);
    let mut env = scenarios::Env { admin, operator };

    let mut failed = Vec::new();
    for (name, body) in scenarios {
        let t = Instant::now();
        println!("scenario {name} ...");
        match catch_unwind(AssertUnwindSafe(|| body(&env))) {
            Ok(()) => println!("scenario {name} ... ok ({:.1} s)", t.elapsed().as_secs_f64()),
            Err(_) => {
                println!("scenario {name} ... FAILED ({:.1} s)", t.elapsed().as_secs_f64());
                failed.push(*name);
            }
        }
    }
    if !failed.is_empty() {
        println!("--- operator log (end) ---\n{}", env.operator.log_tail());
    }
    // Last: the operator stops by itself on SIGTERM, as the kubelet asks.
    if filter.is_none() {
        let exited = env.operator.terminate(std::time::Duration::from_secs(10));
        if exited {
            println!("scenario operator_exits_on_sigterm ... ok");
        } else {
            println!(
                "scenario operator_exits_on_sigterm ... FAILED (still running 10 s after SIGTERM)"
            );
            failed.push("operator_exits_on_sigterm");
        }
    }
    drop(hollow);
    drop(env);
    if std::env::var_os("PREDASTORE_E2E_KEEP").is_some() {
        println!("kept: {} (stop with e2e/cluster/down.sh)", dir.keep().display());
    } else {
        drop(cp);
    }
    println!("apiserver suite: {:.0} s", started.elapsed().as_secs_f64());
    if !failed.is_empty() {
        eprintln!("failed scenarios: {failed:?}");
        std::process::exit(1);
    }
}
