//! Compiles `proto/ai_service.proto` with protox (a pure-Rust protobuf compiler), so a fresh machine needs no
//! system `protoc`, and writes the descriptor set that server reflection serves.
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["ai_service.proto"], ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out.join("ai_service_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // prost's codec, but a request that does not decode is INVALID_ARGUMENT (see src/codec.rs).
        .codec_path("crate::grpc::codec::ProstCodec")
        .compile_fds(fds)?;
    Ok(())
}
