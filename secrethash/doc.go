// Package secrethash stores high-entropy machine secrets (MX API keys,
// webhook secrets, random tokens of 128 bits or more) as a fast keyed
// hash that a leaked configuration does not give away:
//
//	$hmac-sha256$<salt>$<mac>
//
// where salt is 16 random bytes (16 to 64 are read) and mac is
// HMAC-SHA256 keyed with the salt over the secret, both in standard
// base64 without padding. Checking a candidate costs one HMAC, about a
// microsecond, and compares in constant time, so a flood of wrong secrets
// costs the server next to nothing.
//
// The hash is only as strong as the secret: with 128 bits of entropy, no
// search of the secret space from a leaked hash is feasible, which is why
// no deliberate slowness is needed. Human-chosen passwords are guessable
// and need a slow hash (bcrypt, argon2id) instead; [New] refuses secrets
// whose [Strength] is under 128 bits, a bound that catches short or
// single-class secrets but cannot tell a random key from a long phrase.
package secrethash
