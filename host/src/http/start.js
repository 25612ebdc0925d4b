// Starts Converse.js (loaded as a module just before this one) with the settings muc-host
// wrote into the page as JSON.
const settings = JSON.parse(document.getElementById('converse-settings').textContent);
window.converse.initialize(settings);
