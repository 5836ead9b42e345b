//! socai-store
