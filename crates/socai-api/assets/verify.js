/* socai dashboard — checks in the browser, trusting nothing the server says beyond the keys it is given
 * (the log's public key, the witnesses' keys; app.js says where they come from):
 *  - a C2SP signed note (tlog-checkpoint) is signed by the log's Ed25519 key (WebCrypto);
 *  - C2SP tlog-cosignature (cosignature/v1) lines of witnesses over that note (WebCrypto Ed25519);
 *  - RFC 6962 / RFC 9162 §2.1.4.2 consistency proofs between two tree heads (SHA-256 via WebCrypto);
 *  - RFC 9162 §2.1.3.2 inclusion proofs (not used by the page, there for tests and auditors).
 * Every function is pure (no DOM, no network, no storage) and exported as window.socaiVerify
 * (and module.exports under Node, where globalThis.crypto.subtle is the same WebCrypto).
 * Hashes are 32-byte Uint8Arrays; functions taking a hash also accept its 64-digit hex text.
 */
(function (root) {
  'use strict';

  const subtle = () => {
    const c = root.crypto || globalThis.crypto;
    if (!c || !c.subtle) throw new Error('WebCrypto is not available (needs a secure context: https or localhost)');
    return c.subtle;
  };

  // ---------- encodings ----------

  function hexToBytes(hex) {
    if (typeof hex !== 'string' || hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
      throw new Error('not hexadecimal: ' + String(hex).slice(0, 80));
    }
    const out = new Uint8Array(hex.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
    return out;
  }

  function bytesToHex(bytes) {
    let s = '';
    for (const b of bytes) s += b.toString(16).padStart(2, '0');
    return s;
  }

  /** Standard (padded) base64, strictly: anything else throws. */
  function base64ToBytes(text) {
    if (typeof text !== 'string' || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
      throw new Error('not standard padded base64: ' + String(text).slice(0, 80));
    }
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function bytesToBase64(bytes) {
    let bin = '';
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin);
  }

  function utf8(text) {
    return new TextEncoder().encode(text);
  }

  function concat(...parts) {
    const n = parts.reduce((a, p) => a + p.length, 0);
    const out = new Uint8Array(n);
    let o = 0;
    for (const p of parts) { out.set(p, o); o += p.length; }
    return out;
  }

  function equalBytes(a, b) {
    if (a.length !== b.length) return false;
    let d = 0;
    for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
    return d === 0;
  }

  function asHash(h, what) {
    const b = typeof h === 'string' ? hexToBytes(h) : h;
    if (!(b instanceof Uint8Array) || b.length !== 32) throw new Error((what || 'hash') + ' is not 32 bytes');
    return b;
  }

  // ---------- hashing (RFC 6962 §2.1) ----------

  async function sha256(bytes) {
    return new Uint8Array(await subtle().digest('SHA-256', bytes));
  }

  /** Leaf hash SHA-256(0x00 ‖ entry). */
  function leafHash(entryBytes) {
    return sha256(concat(Uint8Array.of(0), entryBytes));
  }

  /** Interior node hash SHA-256(0x01 ‖ left ‖ right). */
  function nodeHash(left, right) {
    return sha256(concat(Uint8Array.of(1), asHash(left), asHash(right)));
  }

  // Sizes are tree sizes: integers in JS's exact range (2^53), compared and shifted as BigInt-free
  // numbers with Math.floor, since >>> would truncate to 32 bits.
  function checkSize(n, what) {
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(what + ' is not a tree size: ' + n);
  }
  const half = (n) => Math.floor(n / 2);
  const odd = (n) => n % 2 === 1;
  const isPowerOfTwo = (n) => n > 0 && Math.pow(2, Math.round(Math.log2(n))) === n;

  /**
   * RFC 9162 §2.1.4.2: checks that `path` proves the tree of `oldSize` leaves with root `oldRoot`
   * is a prefix of the tree of `newSize` leaves with root `newRoot`. 1 ≤ oldSize ≤ newSize; equal
   * sizes need an empty path and equal roots.
   * Resolves to {ok: true} or {ok: false, error: "<why>"}; never rejects for a bad proof.
   */
  async function verifyConsistency(oldSize, newSize, oldRoot, newRoot, path) {
    try {
      checkSize(oldSize, 'old size');
      checkSize(newSize, 'new size');
      const first = asHash(oldRoot, 'old root');
      const second = asHash(newRoot, 'new root');
      if (!Array.isArray(path)) return { ok: false, error: 'path is not a list' };
      const proof = path.map((h, i) => asHash(h, 'path[' + i + ']'));
      if (oldSize === 0 || oldSize > newSize) {
        return { ok: false, error: `need 1 <= old size <= new size, got ${oldSize} and ${newSize}` };
      }
      if (oldSize === newSize) {
        if (proof.length !== 0) return { ok: false, error: `equal sizes need an empty path, got ${proof.length} hashes` };
        if (!equalBytes(first, second)) return { ok: false, error: 'equal sizes but the roots differ' };
        return { ok: true };
      }
      // 1. If first is an exact power of 2, prepend first_hash to the path.
      let rest;
      let seed;
      if (isPowerOfTwo(oldSize)) {
        seed = first;
        rest = proof;
      } else {
        if (proof.length === 0) return { ok: false, error: 'path is empty' };
        seed = proof[0];
        rest = proof.slice(1);
      }
      // 3. fn = first - 1, sn = second - 1; 4. if LSB(fn) is set, shift both right until it is not.
      let fn = oldSize - 1;
      let sn = newSize - 1;
      while (odd(fn)) { fn = half(fn); sn = half(sn); }
      // 5. fr = sr = first value of the path.
      let fr = seed;
      let sr = seed;
      // 6. for each subsequent value c in the path:
      for (const c of rest) {
        // a. if sn is 0, fail.
        if (sn === 0) return { ok: false, error: `path of ${proof.length} hashes is too long` };
        if (odd(fn) || fn === sn) {
          // b. fr = HASH(0x01 ‖ c ‖ fr), sr = HASH(0x01 ‖ c ‖ sr); then, if LSB(fn) is not set,
          //    shift fn and sn right until LSB(fn) is set or fn is 0.
          fr = await nodeHash(c, fr);
          sr = await nodeHash(c, sr);
          while (!odd(fn) && fn !== 0) { fn = half(fn); sn = half(sn); }
        } else {
          // c. sr = HASH(0x01 ‖ sr ‖ c).
          sr = await nodeHash(sr, c);
        }
        // d. shift fn and sn right one.
        fn = half(fn);
        sn = half(sn);
      }
      // 7. sn must be 0, fr must equal first_hash and sr second_hash.
      if (sn !== 0) return { ok: false, error: `path of ${proof.length} hashes is too short` };
      if (!equalBytes(fr, first)) return { ok: false, error: `path leads to old root ${bytesToHex(fr)}, expected ${bytesToHex(first)}` };
      if (!equalBytes(sr, second)) return { ok: false, error: `path leads to new root ${bytesToHex(sr)}, expected ${bytesToHex(second)}` };
      return { ok: true };
    } catch (e) {
      return { ok: false, error: e.message };
    }
  }

  /**
   * RFC 9162 §2.1.3.2: checks an inclusion proof of the leaf hash `leaf` at `index` in the tree of
   * `treeSize` leaves with root `root`. Resolves to {ok: true} or {ok: false, error}.
   */
  async function verifyInclusion(leaf, index, treeSize, path, root) {
    try {
      checkSize(index, 'index');
      checkSize(treeSize, 'tree size');
      const want = asHash(root, 'root');
      let r = asHash(leaf, 'leaf hash');
      if (!Array.isArray(path)) return { ok: false, error: 'path is not a list' };
      const proof = path.map((h, i) => asHash(h, 'path[' + i + ']'));
      if (index >= treeSize) return { ok: false, error: `index ${index} is not below tree size ${treeSize}` };
      let fn = index;
      let sn = treeSize - 1;
      for (const p of proof) {
        if (sn === 0) return { ok: false, error: `path of ${proof.length} hashes is too long` };
        if (odd(fn) || fn === sn) {
          r = await nodeHash(p, r);
          while (!odd(fn) && fn !== 0) { fn = half(fn); sn = half(sn); }
        } else {
          r = await nodeHash(r, p);
        }
        fn = half(fn);
        sn = half(sn);
      }
      if (sn !== 0) return { ok: false, error: `path of ${proof.length} hashes is too short` };
      if (!equalBytes(r, want)) return { ok: false, error: `path leads to root ${bytesToHex(r)}, expected ${bytesToHex(want)}` };
      return { ok: true };
    } catch (e) {
      return { ok: false, error: e.message };
    }
  }

  // ---------- reference Merkle tree (RFC 6962 §2.1, recursive definitions; for tests) ----------

  /** Largest power of two smaller than n (n ≥ 2). */
  function splitPoint(n) {
    let k = 1;
    while (k * 2 < n) k *= 2;
    return k;
  }

  /** MTH(D[n]) over leaf hashes (not entries). Empty tree: SHA-256(""). */
  async function merkleRoot(leafHashes) {
    const n = leafHashes.length;
    if (n === 0) return sha256(new Uint8Array(0));
    if (n === 1) return asHash(leafHashes[0]);
    const k = splitPoint(n);
    return nodeHash(await merkleRoot(leafHashes.slice(0, k)), await merkleRoot(leafHashes.slice(k)));
  }

  /** PROOF(m, D[n]) of RFC 6962 §2.1.2 over leaf hashes: the consistency path from size m. */
  async function proveConsistency(m, leafHashes) {
    const subproof = async (m, d, b) => {
      const n = d.length;
      if (m === n) return b ? [] : [await merkleRoot(d)];
      const k = splitPoint(n);
      if (m <= k) return [...(await subproof(m, d.slice(0, k), b)), await merkleRoot(d.slice(k))];
      return [...(await subproof(m - k, d.slice(k), false)), await merkleRoot(d.slice(0, k))];
    };
    if (m < 1 || m > leafHashes.length) throw new Error('need 1 <= m <= n');
    if (m === leafHashes.length) return [];
    return subproof(m, leafHashes, true);
  }

  /** PATH(m, D[n]) of RFC 6962 §2.1.1 over leaf hashes: the audit path of leaf m. */
  async function proveInclusion(m, leafHashes) {
    const n = leafHashes.length;
    if (n <= 1) return [];
    const k = splitPoint(n);
    if (m < k) return [...(await proveInclusion(m, leafHashes.slice(0, k))), await merkleRoot(leafHashes.slice(k))];
    return [...(await proveInclusion(m - k, leafHashes.slice(k))), await merkleRoot(leafHashes.slice(0, k))];
  }

  // ---------- C2SP signed notes and checkpoints ----------

  const SIG_PREFIX = '\u2014 '; // "— " (EM DASH, space)
  const COSIGNATURE_V1 = 0x04; // signed-note signature type of a witness's Ed25519 cosignature/v1 key

  /**
   * Splits a signed note: text (up to and including the newline before the blank line) and its
   * signature lines. Throws on anything malformed.
   */
  function parseNote(note) {
    if (typeof note !== 'string') throw new Error('note is not text');
    const sep = note.lastIndexOf('\n\n');
    if (sep < 0) throw new Error('note has no blank line before its signatures');
    const text = note.slice(0, sep + 1);
    const sigPart = note.slice(sep + 2);
    if (!sigPart.endsWith('\n')) throw new Error('signature block does not end in a newline');
    const signatures = sigPart.slice(0, -1).split('\n').map(parseSignatureLine);
    if (signatures.length === 0) throw new Error('note has no signature lines');
    return { text, signatures };
  }

  /**
   * One signature line `— <key name> <base64(4-byte key id ‖ signature)>` (without its newline):
   * {name, keyId, signature (the bytes after the key id)}. Throws on anything malformed.
   */
  function parseSignatureLine(line) {
    if (typeof line !== 'string' || !line.startsWith(SIG_PREFIX)) throw new Error('malformed signature line: ' + String(line).slice(0, 80));
    const rest = line.slice(SIG_PREFIX.length);
    const space = rest.lastIndexOf(' ');
    if (space <= 0) throw new Error('malformed signature line: ' + line.slice(0, 80));
    const name = rest.slice(0, space);
    let blob;
    try { blob = base64ToBytes(rest.slice(space + 1)); } catch (e) { throw new Error('signature is not base64'); }
    if (blob.length < 5) throw new Error('signature too short');
    const keyId = ((blob[0] << 24) >>> 0) + (blob[1] << 16) + (blob[2] << 8) + blob[3];
    return { name, keyId, signature: blob.slice(4) };
  }

  /** Parses a checkpoint body `<origin>\n<size>\n<base64 root>\n` (no extension lines). */
  function parseCheckpointBody(text) {
    const lines = text.split('\n');
    if (lines.length !== 4 || lines[3] !== '') throw new Error('checkpoint body is not origin, size, root on three lines');
    const [origin, sizeText, rootText] = lines;
    if (origin === '') throw new Error('empty origin');
    if (!/^(0|[1-9][0-9]*)$/.test(sizeText)) throw new Error('size is not a decimal number: ' + sizeText.slice(0, 40));
    const size = Number(sizeText);
    if (!Number.isSafeInteger(size)) throw new Error('size too large for this verifier: ' + sizeText);
    const root = base64ToBytes(rootText);
    if (root.length !== 32) throw new Error('root is not 32 bytes');
    return { origin, size, root, rootHex: bytesToHex(root) };
  }

  /**
   * C2SP signed-note key id: first 4 bytes of SHA-256(name ‖ "\n" ‖ type ‖ key), big-endian; type
   * 0x01 (a log's Ed25519 key, the default) or 0x04 (a witness's Ed25519 cosignature/v1 key).
   */
  async function keyId(name, publicKey, type) {
    const h = await sha256(concat(utf8(name), Uint8Array.of(0x0a, type === undefined ? 0x01 : type), publicKey));
    return ((h[0] << 24) >>> 0) + (h[1] << 16) + (h[2] << 8) + h[3];
  }

  /**
   * Parses C2SP verifier key text `<name>+<8 hex id>+<base64(type ‖ 32-byte key)>` (checks the id).
   * type: 0x01 (a log's Ed25519 key, the default) or 0x04 (a witness's cosignature/v1 key).
   */
  async function parseVerifierKey(vkey, type) {
    const want = type === undefined ? 0x01 : type;
    if (typeof vkey !== 'string') throw new Error('verifier key is not text');
    const first = vkey.indexOf('+');
    const second = vkey.indexOf('+', first + 1);
    if (first <= 0 || second < 0) throw new Error('verifier key is not <name>+<hex id>+<base64 key>');
    const name = vkey.slice(0, first);
    const idText = vkey.slice(first + 1, second);
    if (!/^[0-9a-f]{8}$/.test(idText)) throw new Error('verifier key id is not 8 lowercase hex digits');
    const blob = base64ToBytes(vkey.slice(second + 1));
    if (blob.length !== 33 || blob[0] !== want) {
      throw new Error(want === 0x04 ? 'verifier key is not an Ed25519 cosignature/v1 key (type 0x04)' : 'verifier key is not an Ed25519 key');
    }
    const publicKey = blob.slice(1);
    const id = parseInt(idText, 16);
    if (id !== (await keyId(name, publicKey, want))) throw new Error('verifier key id does not match its key');
    return { name, keyId: id, publicKey };
  }

  /** A witness's verifier key text `<name>+<hex id>+<base64(0x04 ‖ key)>` (C2SP tlog-cosignature). */
  function parseWitnessKey(vkey) {
    return parseVerifierKey(vkey, COSIGNATURE_V1);
  }

  async function ed25519Verify(publicKey, signature, message) {
    const key = await subtle().importKey('raw', publicKey, { name: 'Ed25519' }, false, ['verify']);
    return subtle().verify({ name: 'Ed25519' }, key, signature, message);
  }

  /**
   * Verifies a checkpoint note against the log's key.
   * key: {name, publicKey (32 bytes or base64 text)}; origin: the expected first line (default: key name).
   * Resolves to {ok: true, checkpoint: {origin, size, root, rootHex}, body (the signed note text:
   * what witnesses' cosignatures sign too)} or
   * {ok: false, code, error} with code one of "malformed", "origin", "unsigned" (no signature line by
   * this key name and id), "signature" (a line by this key that does not verify), "crypto".
   */
  async function verifyCheckpoint(note, key, origin) {
    let parsed;
    let checkpoint;
    let publicKey;
    try {
      publicKey = typeof key.publicKey === 'string' ? base64ToBytes(key.publicKey) : key.publicKey;
      if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) throw new Error('public key is not 32 bytes');
      parsed = parseNote(note);
      checkpoint = parseCheckpointBody(parsed.text);
    } catch (e) {
      return { ok: false, code: 'malformed', error: e.message };
    }
    const wantOrigin = origin || key.name;
    if (checkpoint.origin !== wantOrigin) {
      return { ok: false, code: 'origin', error: `checkpoint origin "${checkpoint.origin}" is not "${wantOrigin}"` };
    }
    const id = await keyId(key.name, publicKey);
    const mine = parsed.signatures.filter((s) => s.name === key.name && s.keyId === id);
    if (mine.length === 0) {
      return { ok: false, code: 'unsigned', error: `no signature by key ${key.name} (${id.toString(16).padStart(8, '0')})` };
    }
    const message = utf8(parsed.text);
    for (const s of mine) {
      let good;
      try {
        good = s.signature.length === 64 && (await ed25519Verify(publicKey, s.signature, message));
      } catch (e) {
        return { ok: false, code: 'crypto', error: 'Ed25519 verification failed to run: ' + e.message };
      }
      if (!good) return { ok: false, code: 'signature', error: `signature by key ${key.name} does not verify` };
    }
    return { ok: true, checkpoint, body: parsed.text };
  }

  // ---------- C2SP tlog-cosignature (cosignature/v1, Ed25519) ----------

  /**
   * Checks witnesses' cosignature lines (`— <name> <base64(key id ‖ 8-byte big-endian time ‖
   * Ed25519 signature)>`, without newline) of a checkpoint whose note body `body` (its text up to
   * and including the newline before the blank line: what verifyCheckpoint returns as `body`,
   * i.e. what the log's key was checked over) against `witnesses`, parsed witness keys
   * ({name, keyId, publicKey}, from parseWitnessKey). The signed message is
   * "cosignature/v1\ntime <decimal time>\n" ‖ body.
   * Lines that are not signature lines, or name no given key (name and key id), are ignored, as
   * C2SP signed notes ignore unknown signatures. A line naming a given key that does not verify
   * is a forged cosignature: {ok: false, code: "cosignature", name (the witness's), error}, whatever
   * else verifies.
   * Otherwise {ok: true, cosigned: [{name, keyId, time}]}: the keys with a valid line, each once,
   * in the order of `witnesses` (time: the latest of its lines, seconds since the epoch).
   */
  async function verifyCosignatures(body, lines, witnesses) {
    if (typeof body !== 'string') return { ok: false, code: 'malformed', error: 'note body is not text' };
    if (!Array.isArray(lines)) return { ok: false, code: 'malformed', error: 'cosignatures are not a list' };
    const found = new Map(); // index in witnesses → latest time
    const hex = (id) => id.toString(16).padStart(8, '0');
    for (const line of lines) {
      let sig;
      try { sig = parseSignatureLine(String(line).replace(/\n$/, '')); } catch (_) { continue; }
      const i = witnesses.findIndex((w) => w.name === sig.name && w.keyId === sig.keyId);
      if (i < 0) continue;
      const w = witnesses[i];
      const forged = (why) => ({ ok: false, code: 'cosignature', name: w.name, error: `the cosignature by witness ${w.name} (${hex(w.keyId)}) does not verify${why ? ': ' + why : ''}` });
      const raw = sig.signature;
      if (raw.length !== 8 + 64) return forged(`${raw.length + 4} bytes, not 76`);
      const time = new DataView(raw.buffer, raw.byteOffset, 8).getBigUint64(0, false);
      if (time > 0x7fffffffffffffffn) return forged('time out of range');
      const message = concat(utf8(`cosignature/v1\ntime ${time.toString()}\n`), utf8(body));
      let good;
      try {
        good = await ed25519Verify(w.publicKey, raw.slice(8), message);
      } catch (e) {
        return { ok: false, code: 'crypto', error: 'Ed25519 verification failed to run: ' + e.message };
      }
      if (!good) return forged('');
      const t = Number(time);
      found.set(i, Math.max(found.has(i) ? found.get(i) : 0, t));
    }
    const cosigned = [...found.keys()].sort((a, b) => a - b)
      .map((i) => ({ name: witnesses[i].name, keyId: witnesses[i].keyId, time: found.get(i) }));
    return { ok: true, cosigned };
  }

  /**
   * What to do with a newly verified checkpoint given the one this browser stored (or null):
   * {action: "first"} nothing stored; {action: "same"} same size and root;
   * {action: "fork"} same size, another root; {action: "rollback"} the log shrank;
   * {action: "prove", from, to} a consistency proof from the stored size is needed;
   * {action: "empty"} the stored tree was empty (anything extends it).
   */
  function decide(stored, current) {
    if (!stored || !Number.isSafeInteger(stored.size) || typeof stored.root !== 'string') return { action: 'first' };
    if (stored.size > current.size) return { action: 'rollback' };
    if (stored.size === current.size) {
      return stored.root.toLowerCase() === current.rootHex.toLowerCase() ? { action: 'same' } : { action: 'fork' };
    }
    if (stored.size === 0) return { action: 'empty' };
    return { action: 'prove', from: stored.size, to: current.size };
  }

  /**
   * Checks a consistency proof object (the API's JSON: old_size, new_size, old_root, new_root, path)
   * proves the stored head {size, root hex} is a prefix of the verified checkpoint {size, rootHex}.
   */
  async function verifyConsistencyProof(proof, stored, current) {
    if (!proof || typeof proof !== 'object') return { ok: false, error: 'no proof' };
    if (proof.old_size !== stored.size || proof.new_size !== current.size) {
      return { ok: false, error: `proof is for sizes ${proof.old_size} → ${proof.new_size}, wanted ${stored.size} → ${current.size}` };
    }
    // The roots come from what we trust (the stored head and the signed note), never from the proof.
    return verifyConsistency(stored.size, current.size, stored.root, current.rootHex, proof.path);
  }

  const api = {
    hexToBytes, bytesToHex, base64ToBytes, bytesToBase64, equalBytes,
    sha256, leafHash, nodeHash,
    verifyConsistency, verifyInclusion, verifyConsistencyProof,
    merkleRoot, proveConsistency, proveInclusion,
    parseNote, parseSignatureLine, parseCheckpointBody, keyId, parseVerifierKey, verifyCheckpoint, decide,
    parseWitnessKey, verifyCosignatures,
  };
  root.socaiVerify = Object.freeze(api);
  if (typeof module !== 'undefined' && module.exports) module.exports = api;
})(typeof window !== 'undefined' ? window : globalThis);
