// The one way the page's scripts call the dashboard API (/app/v1): the session token from
// sessionStorage, no cookies, no cache, no referrer, and every failure as an `ApiError` whose
// message a person can read. Loaded before the other scripts, which use `window.HefflApi`.
(() => {
  'use strict';

  const API_BASE = '/app/v1';
  const TOKEN_STORAGE = 'heffl.developer.sessionToken';

  class ApiError extends Error {
    constructor(status, code, message, details) {
      super(message);
      this.status = status;
      this.code = code;
      this.details = details || null;
      this.reason = (details && details.reason) || undefined;
    }
  }

  // `fieldLabel`, when given, turns a 400's field issues into the message ("Name must not be
  // empty."); without it the message is the server's, and the issues stay in `details`.
  async function request(method, path, body, fieldLabel) {
    const headers = { Accept: 'application/json' };
    const session = sessionStorage.getItem(TOKEN_STORAGE);
    if (session) headers.Authorization = `Bearer ${session}`;
    const init = { method, headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(API_BASE + path, init);
    } catch {
      throw new ApiError(0, 'NETWORK', "Can't reach the server. Check your connection and try again.");
    }
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) {
      const error = (data && data.error) || {};
      const issues = (error.details && Array.isArray(error.details.issues) && error.details.issues) || [];
      const message = fieldLabel && issues.length
        ? issues.map((issue) => `${fieldLabel(issue.field)} ${issue.message}.`).join(' ')
        : error.message || `The server answered with status ${response.status}. Try again.`;
      throw new ApiError(response.status, error.code || `HTTP_${response.status}`, message, error.details);
    }
    return data;
  }

  window.HefflApi = Object.freeze({ ApiError, request });
})();
