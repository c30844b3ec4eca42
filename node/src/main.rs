//! `predastore-node`: parse flags and hand over to [`predastore_node::cli::run`],
//! which `predastore-gateway node` calls too.

use clap::Parser;
use predastore_node::cli::Cli;

fn main() -> anyhow::Result<()> {
    predastore_core::alloc::return_large_buffers_to_the_os();
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    predastore_node::cli::run(Cli::parse()).await
}
