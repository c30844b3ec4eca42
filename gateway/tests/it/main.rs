//! Integration tests: the real gateway driven by real clients over
//! loopback. One binary so the suite links once.

mod admin;
mod auth;
mod bad_input;
mod buckets;
mod common;
mod concurrency;
mod crash;
mod directory;
mod list;
mod multipart;
mod objects;
mod tools;
