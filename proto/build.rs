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

/// Messages whose fields include secrets: no derived `Debug`, so no log or panic message prints them.
const SECRET_HOLDERS: [&str; 2] = [".dw.messaging.v1.WhatsappProviderSettings", ".dw.messaging.v1.SmsProviderSettings"];

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

    for file in &file_descriptors.file {
        if file.name().ends_with("/events.proto") {
            let code = event_contract(file.package(), file.message_type.iter().map(|m| m.name()));
            std::fs::write(out_dir.join(format!("{}.events.rs", file.package())), code)?;
        }
    }

    // `enable_type_names`: every message implements `prost::Name`, so event types come from the
    // contract (`full_name()`) rather than string literals.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    // Ordered maps: a message encodes to the same bytes every time (request hashes compare them).
    config.btree_map(["."]);
    // Messages holding secrets print them redacted (their `Debug` is written in src/lib.rs).
    config.skip_debug(SECRET_HOLDERS);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .skip_protoc_run()
        // Undecodable bodies and control characters in requests are INVALID_ARGUMENT (src/codec.rs).
        .codec_path("crate::codec::CheckedCodec")
        .file_descriptor_set_path(&descriptor_path)
        .compile_fds_with_config(file_descriptors, config)?;
    Ok(())
}

/// The contract of one context's events: an `Event` enum with a variant per message of its
/// `events.proto` (every message there is an event), decoded by the full type name a consumer
/// receives in `ce-type`.
fn event_contract<'a>(package: &str, messages: impl Iterator<Item = &'a str>) -> String {
    let messages: Vec<&str> = messages.collect();
    let variants: String = messages.iter().map(|m| format!("    {m}({m}),\n")).collect();
    let types: String = messages.iter().map(|m| format!("        \"{package}.{m}\",\n")).collect();
    let decode_arms: String = messages
        .iter()
        .map(|m| format!("            \"{package}.{m}\" => Self::{m}(::prost::Message::decode(payload)?),\n"))
        .collect();
    let name_arms: String =
        messages.iter().map(|m| format!("            Self::{m}(_) => \"{package}.{m}\",\n")).collect();
    format!(
        "/// Every event of `{package}`, decoded: match it exhaustively, so an event a consumer ignores\n\
         /// is a visible decision.\n\
         #[derive(Clone, PartialEq, Debug)]\n\
         pub enum Event {{\n{variants}}}\n\n\
         impl Event {{\n\
         \x20   /// The full type names of the contract's events (`ce-type`).\n\
         \x20   pub const TYPES: &'static [&'static str] = &[\n{types}    ];\n\n\
         \x20   /// Decodes an event of type `event_type`; `None` for a type this contract does not have.\n\
         \x20   pub fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Self>, ::prost::DecodeError> {{\n\
         \x20       Ok(Some(match event_type {{\n{decode_arms}            _ => return Ok(None),\n        }}))\n    }}\n\n\
         \x20   /// The event's full type name.\n\
         \x20   pub fn type_name(&self) -> &'static str {{\n\
         \x20       match self {{\n{name_arms}        }}\n    }}\n}}\n\n\
         impl crate::Contract for Event {{\n\
         \x20   const PACKAGE: &'static str = \"{package}\";\n\n\
         \x20   fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Self>, ::prost::DecodeError> {{\n\
         \x20       Event::decode(event_type, payload)\n    }}\n\n\
         \x20   fn type_name(&self) -> &'static str {{\n\
         \x20       Event::type_name(self)\n    }}\n}}\n"
    )
}
