//! Compiles the `.proto` contract with a pure-Rust protobuf compiler (protox),
//! so that a fresh machine needs no `protoc` install.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "pubsubkafka/events/v1/events.proto",
        "pubsubkafka/events/v2/events.proto",
        "pubsubkafka/events/v3/events.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed=protobuf/{file}");
    }
    let descriptors = protox::compile(files, ["protobuf"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
