//! Compressed request bodies (`Content-Encoding: gzip` or `zstd`): which coding a request
//! declares, and a decoder that takes the body chunk by chunk as it arrives and writes the
//! decoded bytes into a buffer that refuses to grow past `limits.max_decoded_body_bytes`.
//!
//! Why not actix-web's own decoder: it inflates each received chunk whole before looking at
//! the result, and a few KB of zstd can expand to gigabytes. Here decoding stops at the first
//! byte over the limit, so a decompression bomb costs at most the limit in memory and the time
//! to decode that much. zstd frames may ask for a window of up to 8 MiB (RFC 9659's limit for
//! HTTP), not the library's default 128 MiB, so a tiny frame cannot claim a large allocation.
//! The decoded bytes are also taken from the process-wide body budget (`body_budget`) as they
//! are written, so many compressed bodies at once cannot pass it either.

use std::io::{self, Write};

use actix_web::http::header;
use actix_web::HttpRequest;
use bytes::{Bytes, BytesMut};
use flate2::write::MultiGzDecoder;

use super::body_budget::BodyReservation;
use super::error::{ApiError, ACCEPTED_CODINGS};
use crate::domain::truncate_for_message;

/// log2 of the largest zstd window accepted: 8 MiB.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Zstd,
}

impl Coding {
    /// From `Content-Encoding`: absent or `identity` is the body as is; `gzip` (or its old
    /// alias `x-gzip`) and `zstd`; one coding at most (`identity` entries aside), since no
    /// sender stacks them and each layer would need its own bound.
    pub fn of(req: &HttpRequest) -> Result<Self, ApiError> {
        let mut coding = Self::Identity;
        for value in req.headers().get_all(header::CONTENT_ENCODING) {
            let Ok(text) = value.to_str() else {
                return Err(unsupported("(not ASCII)"));
            };
            for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                let this = match token.to_ascii_lowercase().as_str() {
                    "identity" => continue,
                    "gzip" | "x-gzip" => Self::Gzip,
                    "zstd" => Self::Zstd,
                    _ => return Err(unsupported(token)),
                };
                if coding != Self::Identity {
                    return Err(ApiError::UnsupportedContentEncoding(format!(
                        "Content-Encoding {:?} stacks codings; send the body with one of {ACCEPTED_CODINGS}",
                        truncate_for_message(text)
                    )));
                }
                coding = this;
            }
        }
        Ok(coding)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }
}

fn unsupported(token: &str) -> ApiError {
    ApiError::UnsupportedContentEncoding(format!(
        "Content-Encoding {:?} is not accepted; send the body as {ACCEPTED_CODINGS}",
        truncate_for_message(token)
    ))
}

/// Why decoding stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The decoded body would pass the limit.
    TooLarge,
    /// The process-wide body budget is spent.
    BudgetExhausted,
    /// Not a valid stream of the declared coding; the codec's words.
    Corrupt(String),
}

/// Decodes a body pushed chunk by chunk.
pub struct Decoder {
    inner: Inner,
}

enum Inner {
    // Multi-member: concatenated gzip files are one valid gzip body (pigz, appending loggers).
    Gzip(MultiGzDecoder<Bounded>),
    Zstd(zstd::stream::write::Decoder<'static, Bounded>),
}

impl Decoder {
    /// A decoder for `coding` (not `Identity`, which needs none) whose output stops at `limit`,
    /// or when `held` cannot take more from the body budget.
    pub fn new(coding: Coding, limit: usize, held: BodyReservation) -> Result<Self, DecodeError> {
        let out = Bounded {
            buf: BytesMut::new(),
            limit,
            held,
            overflowed: false,
            exhausted: false,
        };
        let inner = match coding {
            Coding::Gzip | Coding::Identity => Inner::Gzip(MultiGzDecoder::new(out)),
            Coding::Zstd => {
                let mut raw = zstd::stream::raw::Decoder::new()
                    .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
                raw.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(
                    ZSTD_WINDOW_LOG_MAX,
                ))
                .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
                Inner::Zstd(zstd::stream::write::Decoder::with_decoder(out, raw))
            }
        };
        Ok(Self { inner })
    }

    /// Decodes `chunk`, all of it, unless the output passes the limit or the stream is bad.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<(), DecodeError> {
        while !chunk.is_empty() {
            let written = match &mut self.inner {
                Inner::Gzip(d) => d.write(chunk),
                Inner::Zstd(d) => d.write(chunk),
            };
            match written {
                Ok(0) => {
                    return Err(DecodeError::Corrupt(
                        "the decoder took no more input (data after the end of the stream?)".into(),
                    ))
                }
                Ok(n) => chunk = &chunk[n..],
                Err(e) => return Err(self.classify(e)),
            }
        }
        Ok(())
    }

    /// Ends the stream: the decoded body and its share of the budget, or why the stream was
    /// incomplete or bad.
    pub fn finish(mut self) -> Result<(Bytes, BodyReservation), DecodeError> {
        let finished = match &mut self.inner {
            Inner::Gzip(d) => d.try_finish(),
            Inner::Zstd(d) => d.do_finish(),
        };
        if let Err(e) = finished {
            return Err(self.classify(e));
        }
        let out = match self.inner {
            Inner::Gzip(d) => d
                .finish()
                .map_err(|e| DecodeError::Corrupt(e.to_string()))?,
            Inner::Zstd(d) => d.into_inner(),
        };
        Ok((out.buf.freeze(), out.held))
    }

    fn classify(&self, error: io::Error) -> DecodeError {
        let out = match &self.inner {
            Inner::Gzip(d) => d.get_ref(),
            Inner::Zstd(d) => d.get_ref(),
        };
        if out.overflowed {
            DecodeError::TooLarge
        } else if out.exhausted {
            DecodeError::BudgetExhausted
        } else {
            DecodeError::Corrupt(error.to_string())
        }
    }
}

/// The decoded bytes, refusing any write that would take them past `limit` or past what the
/// body budget gives: the decoders stop at the error, so nothing beyond is ever decoded into
/// memory.
struct Bounded {
    buf: BytesMut,
    limit: usize,
    /// The bytes of `buf`, taken from the body budget.
    held: BodyReservation,
    overflowed: bool,
    exhausted: bool,
}

impl Write for Bounded {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            self.overflowed = true;
            return Err(io::Error::other("the decoded body passed its limit"));
        }
        if self.held.grow(data.len()).is_err() {
            self.exhausted = true;
            return Err(io::Error::other("the body budget is spent"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::body_budget::BodyBudget;
    use super::*;

    fn unbounded() -> BodyReservation {
        BodyBudget::new(usize::MAX).reserve()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("gzip");
        e.finish().expect("gzip")
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(data, 3).expect("zstd")
    }

    /// Decodes `body` fed in pieces of `piece` bytes.
    fn decode(
        coding: Coding,
        body: &[u8],
        piece: usize,
        limit: usize,
    ) -> Result<Bytes, DecodeError> {
        let mut d = Decoder::new(coding, limit, unbounded())?;
        for chunk in body.chunks(piece) {
            d.push(chunk)?;
        }
        d.finish().map(|(bytes, _)| bytes)
    }

    const TEXT: &[u8] = b"{\"event\":{\"n\":1}}\n{\"event\":{\"n\":2}}\n";

    #[test]
    fn decodes_in_any_chunking_and_concatenated_members() {
        for coding in [Coding::Gzip, Coding::Zstd] {
            let body = if coding == Coding::Gzip {
                gzip(TEXT)
            } else {
                zstd(TEXT)
            };
            for piece in [1, 7, body.len()] {
                assert_eq!(decode(coding, &body, piece, 1 << 20).expect("valid"), TEXT);
            }
            let mut twice = body.clone();
            twice.extend_from_slice(&body);
            assert_eq!(
                decode(coding, &twice, 5, 1 << 20).expect("valid").len(),
                2 * TEXT.len()
            );
        }
    }

    #[test]
    fn corrupt_and_truncated_streams_are_corrupt() {
        for coding in [Coding::Gzip, Coding::Zstd] {
            let body = if coding == Coding::Gzip {
                gzip(TEXT)
            } else {
                zstd(TEXT)
            };
            let truncated = &body[..body.len() - 3];
            assert!(matches!(
                decode(coding, truncated, 4, 1 << 20),
                Err(DecodeError::Corrupt(_))
            ));
            assert!(matches!(
                decode(coding, TEXT, 4, 1 << 20),
                Err(DecodeError::Corrupt(_))
            ));
            let mut trailing = body.clone();
            trailing.extend_from_slice(b"garbage");
            assert!(matches!(
                decode(coding, &trailing, 64, 1 << 20),
                Err(DecodeError::Corrupt(_))
            ));
        }
        let mut flipped = gzip(TEXT);
        let last = flipped.len() - 5;
        flipped[last] ^= 0xff; // the CRC
        assert!(matches!(
            decode(Coding::Gzip, &flipped, 8, 1 << 20),
            Err(DecodeError::Corrupt(_))
        ));
    }

    #[test]
    fn a_bomb_stops_at_the_limit_without_decoding_further() {
        let limit = 1 << 20;
        let zeros = vec![0u8; 8 << 20];
        for coding in [Coding::Gzip, Coding::Zstd] {
            let body = if coding == Coding::Gzip {
                gzip(&zeros)
            } else {
                zstd(&zeros)
            };
            let mut d = Decoder::new(coding, limit, unbounded()).expect("decoder");
            let err = body.chunks(16 * 1024).try_for_each(|c| d.push(c));
            assert_eq!(err, Err(DecodeError::TooLarge), "{coding:?}");
            let out = match &d.inner {
                Inner::Gzip(g) => g.get_ref(),
                Inner::Zstd(z) => z.get_ref(),
            };
            assert!(out.buf.len() <= limit && out.buf.capacity() <= 2 * limit);
            // At exactly the limit, the body passes.
            assert_eq!(
                decode(coding, &body, 4096, zeros.len())
                    .expect("fits")
                    .len(),
                zeros.len()
            );
        }
    }

    #[test]
    fn decoded_bytes_come_from_the_body_budget_and_stop_when_it_is_spent() {
        let zeros = vec![0u8; 4 << 20];
        for coding in [Coding::Gzip, Coding::Zstd] {
            let body = if coding == Coding::Gzip {
                gzip(&zeros)
            } else {
                zstd(&zeros)
            };
            let budget = BodyBudget::new(1 << 20);
            let mut d = Decoder::new(coding, 64 << 20, budget.reserve()).expect("decoder");
            let err = body.chunks(16 * 1024).try_for_each(|c| d.push(c));
            assert_eq!(err, Err(DecodeError::BudgetExhausted), "{coding:?}");
            assert!(budget.used() <= 1 << 20);
            drop(d);
            assert_eq!(budget.used(), 0, "given back when the decoder is dropped");

            let budget = BodyBudget::new(8 << 20);
            let mut d = Decoder::new(coding, 64 << 20, budget.reserve()).expect("decoder");
            body.chunks(16 * 1024)
                .try_for_each(|c| d.push(c))
                .expect("fits");
            let (bytes, held) = d.finish().expect("valid");
            assert_eq!(
                (bytes.len(), held.held(), budget.used()),
                (zeros.len(), zeros.len(), zeros.len())
            );
            drop(held);
            assert_eq!(budget.used(), 0);
        }
    }

    #[test]
    fn a_zstd_frame_asking_for_a_window_over_8_mib_is_refused() {
        let mut encoder = zstd::stream::raw::Encoder::new(3).expect("encoder");
        use zstd::stream::raw::{CParameter, Operation};
        encoder
            .set_parameter(CParameter::WindowLog(27))
            .expect("window");
        // A long-distance repeat needs the big window.
        let mut data = vec![0u8; 0];
        let block: Vec<u8> = (0..64 * 1024u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        data.extend_from_slice(&block);
        data.extend(std::iter::repeat_n(7u8, 20 << 20));
        data.extend_from_slice(&block);
        let mut out = vec![0u8; 1 << 20];
        let mut input = zstd::stream::raw::InBuffer::around(&data);
        let mut output = zstd::stream::raw::OutBuffer::around(&mut out[..]);
        while input.pos() < data.len() {
            encoder.run(&mut input, &mut output).expect("compress");
        }
        while encoder.finish(&mut output, true).expect("finish") > 0 {}
        let written = output.pos();
        let frame = &out[..written];
        assert!(matches!(
            decode(Coding::Zstd, frame, 4096, 64 << 20),
            Err(DecodeError::Corrupt(_))
        ));
    }
}
