/**
 * Lazy iteration over list RPCs: the next page is fetched only when the last one is used up.
 */

/** One page of a list: its items, the token of the next page ("" on the last), the response. */
export interface Page<T, R> {
  readonly items: readonly T[];
  readonly nextPageToken: string;
  /** The whole response, for what a list reports besides its items (e.g. totalCount). */
  readonly response: R;
}

/**
 * The items of a list call, fetched page by page as you iterate.
 *
 * `for await (const item of pager)` yields every item across pages; `pager.pages()`
 * yields whole pages. Each iteration starts again from the first page asked for.
 */
export class Pager<T, R> implements AsyncIterable<T> {
  readonly #fetch: (pageToken: string) => Promise<Page<T, R>>;
  readonly #firstToken: string;

  constructor(fetch: (pageToken: string) => Promise<Page<T, R>>, pageToken = "") {
    this.#fetch = fetch;
    this.#firstToken = pageToken;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for await (const page of this.pages()) {
      yield* page.items;
    }
  }

  /** Each page in turn, until the server returns no nextPageToken. */
  async *pages(): AsyncGenerator<Page<T, R>, void, undefined> {
    let token = this.#firstToken;
    for (;;) {
      const page = await this.#fetch(token);
      yield page;
      if (!page.nextPageToken) {
        return;
      }
      token = page.nextPageToken;
    }
  }

  /** Every item of every page, in one array (for lists known to be short). */
  async toArray(): Promise<T[]> {
    const items: T[] = [];
    for await (const item of this) {
      items.push(item);
    }
    return items;
  }
}
