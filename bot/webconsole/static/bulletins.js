// The bulletin desk's live preview: as the editor types, the form (without its photo) goes to
// the preview address and the previews and audience below it are replaced by the answer. No
// inline script: the page's Content-Security-Policy forbids them. Without this script, the
// Preview button does the same by reloading the page.
(function () {
  "use strict";
  var form = document.getElementById("compose");
  var live = document.getElementById("live");
  if (!form || !live || typeof URLSearchParams === "undefined") { return; }
  var timer = null;
  var asked = 0;
  function refresh() {
    var fields = new URLSearchParams();
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.type === "file" || el.type === "submit") { return; }
      if ((el.type === "checkbox" || el.type === "radio") && !el.checked) { return; }
      fields.append(el.name, el.value);
    });
    var mine = ++asked;
    fetch(form.getAttribute("data-preview"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: fields.toString()
    }).then(function (answer) {
      if (!answer.ok) { throw new Error(String(answer.status)); }
      return answer.text();
    }).then(function (html) {
      if (mine === asked) {  // an older answer arriving late does not replace a newer one
        live.innerHTML = html;
        live.setAttribute("data-updated", String(mine));
      }
    }).catch(function () { /* the Preview button still works */ });
  }
  function later() {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(refresh, 400);
  }
  form.addEventListener("input", later);
  form.addEventListener("change", later);
}());
