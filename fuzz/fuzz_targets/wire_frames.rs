//! Frames between gateway and node: payload decoders and the streaming
//! frame readers (v1 and v2 prefixes) on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use predastore_core::wire::{self, MetaFrameRequest, MetaFrameResponse, Request, Response};

fuzz_target!(|data: &[u8]| {
    let _ = Request::decode(data);
    let _ = Response::decode(data);
    let _ = MetaFrameRequest::decode(data);
    let _ = MetaFrameResponse::decode(data);
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    rt.block_on(async {
        let mut r = data;
        while let Ok(p) = wire::read_payload_v2(&mut r).await {
            let _ = MetaFrameRequest::decode(&p);
        }
        let mut r = data;
        while let Ok(p) = wire::read_payload(&mut r).await {
            let _ = Request::decode(&p);
        }
    });
});
