//! Auth verifies its own tokens with the keys in its own database, through
//! the same verifier every other service uses with auth's JWKS.

use kit::auth::{Jwks, KeySource, KeySourceError};

use crate::store::Store;

pub struct DbKeySource {
    pub store: Store,
}

impl KeySource for DbKeySource {
    fn fetch(&self) -> std::pin::Pin<Box<dyn Future<Output = Result<Jwks, KeySourceError>> + Send + '_>> {
        Box::pin(
            async move { crate::api::published_jwks(&self.store).await.map_err(|e| KeySourceError(e.to_string())) },
        )
    }
}
