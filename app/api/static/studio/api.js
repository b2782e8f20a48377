// The studio's API client: the bearer key kept in this tab, Meshy's {"message"} errors as the server words them,
// polite retries on RateLimitExceeded, and task streams through EventSource with short-lived stream tokens.

export const KEY_STORAGE = "meshfoundry-key"; // shared with the playground: one key per tab
export const TERMINAL = new Set(["SUCCEEDED", "FAILED", "CANCELED"]);
const RETRIES = 3;

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
export const getKey = () => sessionStorage.getItem(KEY_STORAGE) || "";
export const setKey = (key) => sessionStorage.setItem(KEY_STORAGE, key.trim());

// One request. `onWait(text)` hears why a call is waiting (rate limited: it retries after Retry-After).
export async function call(method, path, body, { onWait } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const headers = { Authorization: `Bearer ${getKey()}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (error) {
      throw new ApiError(`Cannot reach the server (${error.message})`, 0);
    }
    const text = await response.text();
    let data = {};
    try {
      data = text ? JSON.parse(text) : {};
    } catch {
      data = {};
    }
    // RateLimitExceeded passes in a second; the queue limits (NoMoreConcurrentTasks...) need a task to finish first.
    if (response.status === 429 && data.message === "RateLimitExceeded" && attempt < RETRIES) {
      const wait = Number(response.headers.get("Retry-After")) || 1;
      onWait?.(`The server says RateLimitExceeded: trying again in ${wait} s`);
      await sleep(wait * 1000);
      continue;
    }
    if (!response.ok) throw new ApiError(data.message || `HTTP ${response.status} ${response.statusText}`, response.status);
    return data;
  }
}

// What a person should read next to an API message that is a bare code.
export function explain(error) {
  const hints = {
    NoMoreConcurrentTasks: "your plan's limit of unfinished tasks is reached: wait for one to finish",
    NoMorePendingTasks: "too many unfinished picture tasks: wait for some to finish",
    RateLimitExceeded: "too many requests per second: try again in a moment",
  };
  const hint = hints[error.message];
  return hint ? `${error.message} (${hint})` : error.message;
}

// Follow a task's stream until a terminal event; resolves with the last task object. EventSource cannot send an
// Authorization header, so each connection gets a stream token first (renewed when one expires mid-stream).
export function follow(path, taskId, onTask, { onWait } = {}) {
  return new Promise((resolve, reject) => {
    let renewals = 0;
    let finished = false;
    const open = async () => {
      let token;
      try {
        onWait?.("Asking the server for a stream token");
        ({ token } = await call("POST", "/openapi/v1/stream-tokens", { task_id: taskId }, { onWait }));
      } catch (error) {
        reject(error);
        return;
      }
      onWait?.("Connecting to the task's progress stream");
      const source = new EventSource(`${path}/${taskId}/stream?token=${encodeURIComponent(token)}`);
      source.addEventListener("message", (event) => {
        const task = JSON.parse(event.data);
        (window.studioEvents ||= []).push({ id: task.id, type: task.type, status: task.status, progress: task.progress });
        onTask(task);
        if (TERMINAL.has(task.status)) {
          finished = true;
          source.close();
          resolve(task);
        }
      });
      source.addEventListener("error", (event) => {
        if (finished) return;
        if (event.data) { // our `event: error` carries {status_code, message}
          const { status_code: status, message } = JSON.parse(event.data);
          source.close();
          if (status === 401 && renewals < RETRIES) {
            renewals += 1;
            open(); // the token expired while the task ran: a fresh one
          } else {
            reject(new ApiError(message, status));
          }
        } else if (source.readyState === EventSource.CLOSED) { // the browser gave up reconnecting
          onWait?.("The progress stream closed; reconnecting in 2 s");
          setTimeout(open, 2000);
        } else {
          onWait?.("The progress stream was interrupted; the browser is reconnecting");
        }
      });
    };
    open();
  });
}
