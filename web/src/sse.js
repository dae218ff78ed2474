// Server-Sent Events over fetch(): EventSource cannot send an Authorization header, so the
// dashboard reads `text/event-stream` bodies itself. Follows the WHATWG parsing rules
// (fields data/event, comments, CRLF/CR/LF line ends, multi-line data joined with "\n").

/**
 * Reads an SSE response body to its end, calling onEvent({event, data, id}) for each event
 * (id = the last event id seen, as EventSource's lastEventId).
 * Resolves when the stream ends; rejects on network errors or when `signal` aborts.
 * If onEvent returns false the stream is cancelled and readSse resolves.
 */
export async function readSse(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let event = '';
  let data = [];
  let lastId = '';
  let stopped = false;

  const dispatch = () => {
    if (data.length > 0 && !stopped) {
      if (onEvent({ event: event || 'message', data: data.join('\n'), id: lastId }) === false) stopped = true;
    }
    event = '';
    data = [];
  };
  const line = (text) => {
    if (text === '') return dispatch();
    if (text.startsWith(':')) return; // comment / keep-alive
    const colon = text.indexOf(':');
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') data.push(value);
    else if (field === 'event') event = value;
    else if (field === 'id' && !value.includes('\0')) lastId = value;
  };

  try {
    while (!stopped) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      for (;;) {
        const m = /\r\n|\n|\r/.exec(buf);
        if (!m) break;
        // A lone "\r" at the end may be the first half of "\r\n": wait for more bytes.
        if (m[0] === '\r' && m.index === buf.length - 1) break;
        line(buf.slice(0, m.index));
        buf = buf.slice(m.index + m[0].length);
        if (stopped) break;
      }
    }
    if (!stopped) {
      if (buf !== '') line(buf);
      dispatch(); // tolerate a final event without the closing blank line
    }
  } finally {
    if (stopped) reader.cancel().catch(() => {});
    else reader.releaseLock();
  }
}
