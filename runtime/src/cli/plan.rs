//! `edgeslim-rt plan`: what tract will execute, node by node, with kernel names.

use super::ModelArgs;
use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    json: edgeslim_runtime::json_out::JsonArg,
}

pub fn run(a: &PlanArgs) -> Result<()> {
    use edgeslim_runtime::plan::{kernel_names, plan_nodes};
    let model = a.model.load()?;
    let nodes = plan_nodes(&model);
    let kernels = kernel_names(&nodes);
    let doc = serde_json::json!({
        "model": model.path.display().to_string(),
        "sha256": model.sha256,
        "optimized": model.optimized,
        "kernels": kernels,
        "nodes": nodes,
    });
    if edgeslim_runtime::json_out::emit(&a.json.dest, &doc)? {
        return Ok(());
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
