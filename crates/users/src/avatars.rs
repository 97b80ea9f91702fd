//! Avatars: uploads decoded for real, cropped square, resized to a full size
//! and a thumbnail, re-encoded (which drops every bit of metadata, GPS
//! included), and kept in an object store. Everyone without an upload gets a
//! generated one.

use std::io::Cursor;
use std::sync::Arc;

use bytes::Bytes;
use image::{DynamicImage, ImageFormat, ImageReader, Rgb, RgbImage};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use kit::Secret;

/// Largest upload accepted, in bytes.
pub const MAX_UPLOAD_BYTES: usize = 5 * 1024 * 1024;
/// Largest image accepted, in pixels per side (decoding bigger ones could
/// exhaust memory: a small file can claim enormous dimensions).
pub const MAX_SIDE: u32 = 6000;
/// The full size and the thumbnail.
pub const FULL: u32 = 256;
pub const THUMB: u32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum AvatarError {
    #[error("the file is not an image in a supported format (PNG, JPEG, WebP or GIF)")]
    NotAnImage,
    #[error("the image is too large: at most {MAX_SIDE}×{MAX_SIDE} pixels")]
    TooManyPixels,
    #[error("avatar storage failed: {0}")]
    Storage(#[from] object_store::Error),
    #[error("encoding the avatar failed: {0}")]
    Encode(String),
}

/// An avatar ready to store.
#[derive(Debug, Clone)]
pub struct Processed {
    /// Names this version (changes with the content).
    pub etag: String,
    pub full: Bytes,
    pub thumb: Bytes,
}

/// Decodes `upload` (whatever its name or declared type says), crops it
/// square, resizes it and re-encodes it as JPEG.
pub fn process(upload: &[u8]) -> Result<Processed, AvatarError> {
    let mut reader =
        ImageReader::new(Cursor::new(upload)).with_guessed_format().map_err(|_| AvatarError::NotAnImage)?;
    match reader.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP | ImageFormat::Gif) => {}
        _ => return Err(AvatarError::NotAnImage),
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(256 * 1024 * 1024);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => AvatarError::TooManyPixels,
        _ => AvatarError::NotAnImage,
    })?;
    let square = crop_square(&image);
    let full = encode_jpeg(&flatten(&square.resize_exact(FULL, FULL, image::imageops::FilterType::Lanczos3)))?;
    let thumb = encode_jpeg(&flatten(&square.resize_exact(THUMB, THUMB, image::imageops::FilterType::Lanczos3)))?;
    Ok(Processed { etag: etag_of(&full), full, thumb })
}

fn crop_square(image: &DynamicImage) -> DynamicImage {
    let (w, h) = (image.width(), image.height());
    let side = w.min(h);
    image.crop_imm((w - side) / 2, (h - side) / 2, side, side)
}

/// Transparent pixels become white (JPEG has no transparency).
fn flatten(image: &DynamicImage) -> RgbImage {
    let rgba = image.to_rgba8();
    let mut out = RgbImage::new(rgba.width(), rgba.height());
    for (x, y, p) in rgba.enumerate_pixels() {
        let a = u16::from(p[3]);
        let mix = |c: u8| ((u16::from(c) * a + 255 * (255 - a)) / 255) as u8;
        out.put_pixel(x, y, Rgb([mix(p[0]), mix(p[1]), mix(p[2])]));
    }
    out
}

fn encode_jpeg(image: &RgbImage) -> Result<Bytes, AvatarError> {
    let mut out = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85);
    image.write_with_encoder(encoder).map_err(|e| AvatarError::Encode(e.to_string()))?;
    Ok(Bytes::from(out))
}

fn etag_of(bytes: &[u8]) -> String {
    use base64::Engine;
    let digest = Sha256::digest(bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..12])
}

/// The generated avatar of `user` at `size` pixels (PNG): a symmetric 5×5
/// pattern in a colour drawn from the id, so everyone is recognisable.
pub fn default_avatar(user: Uuid, size: u32) -> Result<Bytes, AvatarError> {
    let digest = Sha256::digest(user.as_bytes());
    let fg = Rgb([64 + digest[0] / 2, 64 + digest[1] / 2, 64 + digest[2] / 2]);
    let bg = Rgb([240, 240, 240]);
    let cell = size / 7;
    let margin = (size - cell * 5) / 2;
    let mut img = RgbImage::from_pixel(size, size, bg);
    for row in 0..5u32 {
        for col in 0..3u32 {
            let bit = (row * 3 + col) as usize;
            if digest[3 + bit / 8] >> (bit % 8) & 1 == 1 {
                for mirrored in [col, 4 - col] {
                    let (x0, y0) = (margin + mirrored * cell, margin + row * cell);
                    for y in y0..y0 + cell {
                        for x in x0..x0 + cell {
                            img.put_pixel(x, y, fg);
                        }
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
        .map_err(|e| AvatarError::Encode(e.to_string()))?;
    Ok(Bytes::from(out))
}

/// The version tag of the generated avatar (stable for a user).
pub fn default_etag(user: Uuid) -> String {
    format!("d{}", &etag_of(user.as_bytes())[..10])
}

/// Where avatars are kept: `[users.avatars]` in `panal.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct StorageSettings {
    /// `local` (a directory) or `s3` (any S3-compatible store).
    pub backend: String,
    /// The directory for `local` (default `<data_dir>/avatars`).
    pub dir: Option<std::path::PathBuf>,
    pub s3_bucket: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<Secret<String>>,
    /// Allow a plain-HTTP endpoint (a local MinIO, tests).
    pub s3_allow_http: bool,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            backend: "local".to_owned(),
            dir: None,
            s3_bucket: None,
            s3_endpoint: None,
            s3_region: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_allow_http: false,
        }
    }
}

/// Stored avatars: `avatars/<user>/<etag>-<size>.jpg`.
#[derive(Clone)]
pub struct AvatarStore {
    store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for AvatarStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AvatarStore({})", self.store)
    }
}

impl AvatarStore {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// The store `settings` describe; `data_dir` holds the local default.
    pub fn from_settings(settings: &StorageSettings, data_dir: &std::path::Path) -> anyhow::Result<Self> {
        match settings.backend.as_str() {
            "local" => {
                let dir = settings.dir.clone().unwrap_or_else(|| data_dir.join("avatars"));
                std::fs::create_dir_all(&dir)?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)?;
                Ok(Self::new(Arc::new(store)))
            }
            "s3" => {
                let mut builder = object_store::aws::AmazonS3Builder::new().with_allow_http(settings.s3_allow_http);
                let bucket = settings.s3_bucket.clone().ok_or_else(|| {
                    anyhow::anyhow!("invalid configuration: users.avatars.s3_bucket is required with backend = \"s3\"")
                })?;
                builder = builder.with_bucket_name(bucket);
                if let Some(v) = &settings.s3_endpoint {
                    builder = builder.with_endpoint(v);
                }
                if let Some(v) = &settings.s3_region {
                    builder = builder.with_region(v);
                }
                if let Some(v) = &settings.s3_access_key_id {
                    builder = builder.with_access_key_id(v);
                }
                if let Some(v) = &settings.s3_secret_access_key {
                    builder = builder.with_secret_access_key(v.expose());
                }
                Ok(Self::new(Arc::new(builder.build()?)))
            }
            other => {
                anyhow::bail!("invalid configuration: users.avatars.backend must be \"local\" or \"s3\", got {other:?}")
            }
        }
    }

    fn path(user: Uuid, etag: &str, size: u32) -> Path {
        Path::from(format!("avatars/{user}/{etag}-{size}.jpg"))
    }

    pub async fn put(&self, user: Uuid, avatar: &Processed) -> Result<(), AvatarError> {
        self.store.put(&Self::path(user, &avatar.etag, FULL), PutPayload::from(avatar.full.clone())).await?;
        self.store.put(&Self::path(user, &avatar.etag, THUMB), PutPayload::from(avatar.thumb.clone())).await?;
        Ok(())
    }

    /// The stored avatar, or `None` when it is not there.
    pub async fn get(&self, user: Uuid, etag: &str, size: u32) -> Result<Option<Bytes>, AvatarError> {
        match self.store.get(&Self::path(user, etag, size)).await {
            Ok(result) => Ok(Some(result.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes one version; a version already gone is not an error.
    pub async fn delete(&self, user: Uuid, etag: &str) -> Result<(), AvatarError> {
        for size in [FULL, THUMB] {
            match self.store.delete(&Self::path(user, etag, size)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| Rgb([(x % 255) as u8, (y % 255) as u8, 128]));
        let mut out = Vec::new();
        DynamicImage::ImageRgb8(img).write_to(&mut Cursor::new(&mut out), ImageFormat::Png).unwrap();
        out
    }

    #[test]
    fn uploads_are_cropped_resized_and_reencoded_as_jpeg() {
        let p = process(&png(400, 300)).unwrap();
        let full = image::load_from_memory(&p.full).unwrap();
        assert_eq!((full.width(), full.height()), (FULL, FULL));
        let thumb = image::load_from_memory(&p.thumb).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (THUMB, THUMB));
        assert_eq!(image::guess_format(&p.full).unwrap(), ImageFormat::Jpeg);
    }

    #[test]
    fn non_images_are_refused_whatever_they_claim_to_be() {
        // A GIF header followed by text: the "dimensions" it claims are absurd.
        assert!(matches!(process(b"GIF89a not really"), Err(AvatarError::NotAnImage | AvatarError::TooManyPixels)));
        assert!(matches!(process(b"GIF89a\x01\x00\x01\x00 not really"), Err(AvatarError::NotAnImage)));
        assert!(matches!(process(b"<svg xmlns='http://www.w3.org/2000/svg'/>"), Err(AvatarError::NotAnImage)));
        assert!(matches!(process(&[0u8; 100]), Err(AvatarError::NotAnImage)));
    }

    #[test]
    fn images_claiming_enormous_dimensions_are_refused_before_decoding() {
        // A valid PNG header announcing 100000×100000 pixels.
        let mut bomb = png(1, 1);
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        assert!(matches!(process(&bomb), Err(AvatarError::TooManyPixels | AvatarError::NotAnImage)));
    }

    #[test]
    fn default_avatars_are_stable_pngs() {
        let id = Uuid::now_v7();
        let a = default_avatar(id, FULL).unwrap();
        assert_eq!(a, default_avatar(id, FULL).unwrap());
        assert_eq!(image::guess_format(&a).unwrap(), ImageFormat::Png);
        assert_ne!(a, default_avatar(Uuid::now_v7(), FULL).unwrap());
    }
}
