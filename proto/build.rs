//! Compiles every `.proto` under `dw/` with protox (pure Rust, no system `protoc`) and writes
//! the descriptor set next to the generated code so services can serve gRPC reflection.

use std::path::{Path, PathBuf};

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let mut protos = Vec::new();
    collect_protos(&root.join("dw"), &mut protos)?;
    protos.sort();
    println!("cargo:rerun-if-changed=dw");

    let file_descriptors = protox::compile(&protos, [&root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("dw_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&file_descriptors))?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .skip_protoc_run()
        .file_descriptor_set_path(&descriptor_path)
        .compile_fds(file_descriptors)?;
    Ok(())
}
