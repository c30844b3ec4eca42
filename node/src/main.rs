//! `predastore-node`: parse flags and hand over to [`predastore_node::cli::run`],
//! which `predastore-gateway node` calls too.

use clap::Parser;
use predastore_node::cli::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    predastore_node::cli::run(Cli::parse()).await
}
