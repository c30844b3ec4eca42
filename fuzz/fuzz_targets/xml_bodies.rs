//! The XML bodies clients send (CompleteMultipartUpload, DeleteObjects,
//! tagging, CreateBucket, CORS): s3s's deserializer on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s3s::dto::{
    CORSConfiguration, CompletedMultipartUpload, CreateBucketConfiguration, Delete, Tagging,
};
use s3s::xml::{Deserialize, Deserializer};

fn parse<'a, T: Deserialize<'a>>(data: &'a [u8]) {
    let mut d = Deserializer::new(data);
    if T::deserialize(&mut d).is_ok() {
        let _ = d.expect_eof();
    }
}

fuzz_target!(|data: &[u8]| {
    parse::<CompletedMultipartUpload>(data);
    parse::<Delete>(data);
    parse::<Tagging>(data);
    parse::<CreateBucketConfiguration>(data);
    parse::<CORSConfiguration>(data);
});
