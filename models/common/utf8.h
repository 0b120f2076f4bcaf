// UTF-8 decoding, one sequence at a time (RFC 3629): shared by the WordPiece tokenizer and the
// one-line error messages.
#pragma once

#include <cstddef>

namespace zoo::utf8 {

/// The length (1 to 4) of the well-formed UTF-8 sequence at the start of `p[0..n)`, storing its
/// code point in `cp`; 0 when there is none (a stray continuation byte, a cut sequence, an
/// overlong form, a surrogate, a value past U+10FFFF, or n == 0).
inline size_t sequence(const unsigned char* p, size_t n, char32_t& cp) {
  if (n == 0) return 0;
  const unsigned char c = p[0];
  size_t len = 0;
  char32_t min = 0;
  if (c < 0x80) len = 1, cp = c;
  else if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
  else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
  else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
  if (len == 0 || len > n) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((p[k] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[k] & 0x3F);
  }
  if (len > 1 && (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))) return 0;
  return len;
}

}  // namespace zoo::utf8
