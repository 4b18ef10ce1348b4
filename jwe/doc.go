// Package jwe encrypts and decrypts the JWE-encrypted responses of the MX
// Platform API, over github.com/go-jose/go-jose/v4.
//
// A client asks for an encrypted response by sending
//
//	Content-Type: application/encrypted.a256gcm+json   (or a128gcm)
//	X-Public-Key: <base64 of the DER SubjectPublicKeyInfo of an ECDH key>
//
// on a P-384 (recommended) or P-256 key, and MX answers with a compact JWE
// whose key is agreed with ECDH-ES and wrapped with AES key wrap:
// ECDH-ES+A256KW with A256GCM for a256gcm, and, as the setting that MX's
// documents leave open, ECDH-ES+A128KW with A128GCM for a128gcm.
//
// Decryption takes explicit allow-lists of key and content algorithms,
// never accepts compression, checks that the sender's ephemeral key is on
// the recipient's curve, and reports every cryptographic failure as the one
// opaque ErrDecrypt.
package jwe
