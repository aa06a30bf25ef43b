// Public URL bases: an explicit option wins; otherwise the address the listener bound, known once listening.
import { describe, expect, test } from 'vitest';
import { HttpError } from '../../src/api/errors.js';
import { PublicUrls } from '../../src/api/urls.js';
import type { BuildRecord } from '../../src/builds/registry.js';

const id = 'a'.repeat(64);
const record = (tlsArtifacts: boolean) => ({ id, request: { tlsArtifacts } }) as unknown as BuildRecord;
const bound = { http: '127.0.0.1:40001', https: '[::1]:40002' };

describe('PublicUrls', () => {
  test('without options, the bases name the bound addresses', () => {
    const urls = new PublicUrls({ publicUrl: null, publicTlsUrl: null, tls: true });
    expect(urls.resolve(bound)).toEqual({ publicUrl: 'http://127.0.0.1:40001', publicTlsUrl: 'https://[::1]:40002' });
    expect(urls.buildStatus(id)).toBe(`http://127.0.0.1:40001/api/v1/builds/${id}`);
    expect(urls.artifacts(record(false))).toEqual({
      ukiUrl: `http://127.0.0.1:40001/artifacts/${id}/uki.efi`,
      isoUrl: `http://127.0.0.1:40001/artifacts/${id}/boot.iso`,
    });
    expect(urls.artifacts(record(true))).toEqual({
      ukiUrl: `https://[::1]:40002/artifacts/${id}/uki.efi`,
      isoUrl: `https://[::1]:40002/artifacts/${id}/boot.iso`,
    });
  });

  test('explicit bases win over the bound addresses, also when they name the same host and port', () => {
    const urls = new PublicUrls({ publicUrl: 'http://127.0.0.1:0', publicTlsUrl: 'https://tls.example/uod', tls: true });
    expect(urls.resolve(bound)).toEqual({ publicUrl: 'http://127.0.0.1:0', publicTlsUrl: 'https://tls.example/uod' });
    expect(urls.buildStatus(id)).toBe(`http://127.0.0.1:0/api/v1/builds/${id}`);
    expect(urls.artifacts(record(true)).isoUrl).toBe(`https://tls.example/uod/artifacts/${id}/boot.iso`);
  });

  test('without a TLS listener there is no TLS base', () => {
    const urls = new PublicUrls({ publicUrl: null, publicTlsUrl: null, tls: false });
    expect(urls.hasTls).toBe(false);
    expect(urls.resolve({ http: '[::]:8080', https: null })).toEqual({ publicUrl: 'http://[::]:8080', publicTlsUrl: null });
  });

  test('before the listeners are bound there is no URL to hand out (503), and the bases are resolved once', () => {
    const urls = new PublicUrls({ publicUrl: 'http://192.0.2.5:8080', publicTlsUrl: null, tls: false });
    expect(() => urls.buildStatus(id)).toThrow(HttpError);
    try {
      urls.artifacts(record(false));
      expect.unreachable();
    } catch (err) {
      expect((err as HttpError).statusCode).toBe(503);
    }
    urls.resolve(bound);
    expect(() => urls.resolve(bound)).toThrow('public URLs are resolved once');
  });
});
