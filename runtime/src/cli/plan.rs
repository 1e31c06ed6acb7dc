//! `edgeslim-rt plan`: what tract will execute, node by node, with kernel names.

use super::ModelArgs;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Write the plan here as JSON (nodes with op, info and output facts; kernel names).
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(a: &PlanArgs) -> Result<()> {
    use edgeslim_runtime::plan::{kernel_names, plan_nodes};
    let model = a.model.load()?;
    let nodes = plan_nodes(&model);
    let kernels = kernel_names(&nodes);
    if let Some(path) = &a.json {
        let doc = serde_json::json!({
            "model": model.path.display().to_string(),
            "sha256": model.sha256,
            "optimized": model.optimized,
            "kernels": kernels,
            "nodes": nodes,
        });
        let bytes = serde_json::to_vec_pretty(&doc)?;
        edgeslim_runtime::fsutil::write_atomic(path, &bytes)?;
    }
    for n in &nodes {
        println!("{:>5} {:<22} {}", n.id, n.op, n.name);
        for line in &n.info {
            println!("        {line}");
        }
    }
    println!(
        "{} plan nodes; matrix kernels: {}",
        nodes.len(),
        if kernels.is_empty() {
            "none".to_string()
        } else {
            kernels.join(", ")
        }
    );
    Ok(())
}
