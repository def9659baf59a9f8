//! Notary Project signatures: work in progress by the supply-chain work.
