//! Raft metadata records (requests, results and the records they carry):
//! any bytes decode to a value or an error, never a panic, and whatever
//! decodes encodes back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use predastore_core::meta::{self, MetaRequest, MetaResult, ObjectRecord};

fn round_trips<T>(data: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(v) = meta::decode::<T>(data) {
        let again = meta::decode::<T>(&meta::encode(&v)).expect("an encoded value decodes");
        assert_eq!(again, v);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trips::<MetaRequest>(data);
    round_trips::<MetaResult>(data);
    round_trips::<ObjectRecord>(data);
});
