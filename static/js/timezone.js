// Names the browser's time zone in the "tz" cookie, which the server reads to show the pages'
// times in it (stickerloop/timezones.py). Written only when it changed; the next page uses it.
(function () {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (!zone) return;
  const value = encodeURIComponent(zone);
  if (document.cookie.split("; ").includes(`tz=${value}`)) return;
  document.cookie = `tz=${value}; path=/; max-age=31536000; samesite=lax`;
})();
