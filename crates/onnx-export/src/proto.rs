//! The ONNX protobuf messages: prost's code for ONNX 1.23.2's `onnx.proto` (`generated/onnx.rs`, rebuilt by
//! `codegen/`).
#![allow(missing_docs, clippy::all)]

include!(concat!(env!("CARGO_MANIFEST_DIR"), "/generated/onnx.rs"));
