//! The sample media `local` mode seeds its S3 store with: a short WAV made here, so the quick
//! start needs no download.

/// A 16-bit mono PCM WAV of `seconds` of a 440 Hz tone at 16 kHz.
pub fn tone_wav(seconds: u32) -> Vec<u8> {
    let rate: u32 = 16_000;
    let samples = rate * seconds;
    let data_len = samples * 2;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 2).to_le_bytes()); // byte rate
    wav.extend_from_slice(&2u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for n in 0..samples {
        let t = n as f64 / rate as f64;
        let sample = (f64::sin(2.0 * std::f64::consts::PI * 440.0 * t) * 8000.0) as i16;
        wav.extend_from_slice(&sample.to_le_bytes());
    }
    wav
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_wav_header_describes_the_data() {
        let wav = super::tone_wav(3);
        assert_eq!(&wav[0..4], b"RIFF");
        assert_eq!(&wav[8..16], b"WAVEfmt ");
        let data_len = u32::from_le_bytes(wav[40..44].try_into().unwrap());
        assert_eq!(data_len, 16_000 * 3 * 2);
        assert_eq!(wav.len(), 44 + data_len as usize);
    }
}
