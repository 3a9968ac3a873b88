#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod bucket;
mod config;
mod error;
mod key;
mod local;
mod object;
mod platform;
#[cfg(feature = "s3")]
mod s3;
mod storage;

#[cfg(feature = "s3")]
pub use aws_sdk_s3;

pub use bucket::TenantBucket;
pub use config::{
    BackendConfig, Encryption, Layout, LocalConfig, ObjectLock, RetentionMode, S3Config,
    S3Credentials, StorageConfig,
};
pub use error::{Error, ErrorKind};
pub use key::{MAX_KEY_LEN, check_key};
pub use object::{
    ListPage, ListRequest, ListedObject, Object, ObjectBody, ObjectInfo, PresignedRequest,
    PutOptions, PutReceipt, Retention,
};
pub use platform::{Deletion, StoragePlatform};
pub use storage::TenantStorage;
