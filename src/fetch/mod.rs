//! Fetch: download every image URL into the content-addressed cache, politely.
//! (Filled in by the fetch stage work.)
